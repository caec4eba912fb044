// The deployed tier's JWT route: answers with the caller's identity as the gateway saw it.
export default async function handler(_input: unknown, ctx: any) {
  return { auth: ctx.auth };
}
