/// <reference path="../../flux.d.ts" />

// GET /orders/{id}: the order and its lines, read together in one transaction (ctx.db.batch).
export default async function handler(input: { id: string }, ctx: FluxContext) {
  if (!/^\d+$/.test(input?.id ?? "")) {
    throw new FluxError(400, "validation_failed", "the order id must be a positive integer");
  }
  const [orders, items] = await ctx.db.batch([
    { table: "orders", operation: "select", filters: [{ column: "id", op: "eq", value: input.id }], limit: 1 },
    {
      table: "order_items", operation: "select",
      columns: ["id", "product_id", "quantity", "unit_price"],
      filters: [{ column: "order_id", op: "eq", value: input.id }], order: [{ column: "id" }],
    },
  ]);
  if (orders.length === 0) throw new FluxError(404, "not_found", `no order ${input.id}`);
  return { ...orders[0], items };
}
