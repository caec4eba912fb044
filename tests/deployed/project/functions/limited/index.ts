// The deployed tier's rate-limited route: two requests a minute per caller.
export default async function handler(_input: unknown, _ctx: any) {
  return { ok: true };
}
