/// <reference path="../../flux.d.ts" />

// DELETE /orders/{id} (with an API key): cancels a pending order. 204 on success, 404 when there is
// no such order, 409 when it is already paid, shipped or cancelled.
export default async function handler(input: { id: string }, ctx: FluxContext) {
  if (!/^\d+$/.test(input?.id ?? "")) {
    throw new FluxError(400, "validation_failed", "the order id must be a positive integer");
  }
  const cancelled = await ctx.db.query({
    table: "orders", operation: "update", data: { status: "cancelled" }, returning: ["id"],
    filters: [{ column: "id", op: "eq", value: input.id }, { column: "status", op: "eq", value: "pending" }],
  });
  if (cancelled.length === 0) {
    const [order] = await ctx.db.query({ table: "orders", operation: "select", columns: ["status"],
                                         filters: [{ column: "id", op: "eq", value: input.id }], limit: 1 });
    if (!order) throw new FluxError(404, "not_found", `no order ${input.id}`);
    throw new FluxError(409, "not_cancellable", `order ${input.id} is ${order.status}`);
  }
  ctx.log.info("order cancelled", { orderId: input.id, by: ctx.auth.key_name ?? null });
  return new Response(null, { status: 204 });
}
