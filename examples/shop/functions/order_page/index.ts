/// <reference path="../../flux.d.ts" />

// GET /orders/{id}/page: everything an order page shows — the order, its customer, its lines with
// their product names — in ONE statement: the embeds follow the foreign keys (order_items.order_id,
// order_items.product_id, orders.user_id) and the engine compiles them to lateral joins.
export default async function handler(input: { id: string }, ctx: FluxContext) {
  if (!/^\d+$/.test(input?.id ?? "")) {
    throw new FluxError(400, "validation_failed", "the order id must be a positive integer");
  }
  const [order] = await ctx.db.query({
    table: "orders", operation: "select",
    columns: ["id", "status", "total", "created_at"],
    filters: [{ column: "id", op: "eq", value: input.id }],
    limit: 1,
    embed: {
      customer: { table: "users", columns: ["name", "email"] },
      items: {
        table: "order_items", columns: ["id", "quantity", "unit_price"], order: [{ column: "id" }],
        embed: { product: { table: "products", columns: ["sku", "name"] } },
      },
    },
  });
  if (!order) throw new FluxError(404, "not_found", `no order ${input.id}`);
  const items = order.items as { quantity: number; unit_price: number }[];
  return { ...order, lines: items.length, units: items.reduce((sum, item) => sum + item.quantity, 0) };
}
