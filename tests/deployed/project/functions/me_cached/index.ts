// The deployed tier's authenticated route without a rate limit: the route an authorizer result cache would serve.
export default async function handler(_input: unknown, ctx: any) {
  return { auth: ctx.auth };
}
