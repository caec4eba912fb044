/// <reference path="../../flux.d.ts" />

export default async function handler(input: { name?: string }, ctx: FluxContext) {
  const name = input.name ?? "world";
  ctx.log.info("saying hello", { name });
  return { message: `Hello, ${name}!`, requestId: ctx.requestId };
}
