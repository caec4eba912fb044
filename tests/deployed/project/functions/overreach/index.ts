// The deployed tier's least-privilege probe: it declares no secrets, pushes or invokes, and tries each.
export default async function handler(input: { what: string }, ctx: any) {
  if (input.what === "secret") return { value: await ctx.secrets.get("PAYMENT_WEBHOOK_SECRET") };
  if (input.what === "push") return await ctx.queue.push("send_invoice", { orderId: 1 });
  if (input.what === "invoke") return await ctx.function.invoke("hello", { name: "x" });
  return { what: input.what };
}
