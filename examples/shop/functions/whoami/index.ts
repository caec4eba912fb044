/// <reference path="../../flux.d.ts" />

// Protected by an API key (see flux.json): create one with `flux keys create --name me`.
export default async function handler(_input: unknown, ctx: FluxContext) {
  ctx.log.info("whoami", { key: ctx.auth.key_name ?? null });
  return { auth: ctx.auth };
}
