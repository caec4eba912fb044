/// <reference path="../../flux.d.ts" />

// GET /reports/orders-batched?limit=20: the same report in two queries, whatever the number of
// orders: the lines of every order come back from one `in` query and are grouped in memory.
export default async function handler(input: { limit?: string }, ctx: FluxContext) {
  const limit = Math.min(Math.max(Number(input?.limit ?? 20) || 20, 1), 100);
  const orders = await ctx.db.query({
    table: "orders", operation: "select", columns: ["id", "status", "total"],
    order: [{ column: "id" }], limit,
  });
  const items = orders.length === 0 ? [] : await ctx.db.query({
    table: "order_items", operation: "select", columns: ["order_id", "quantity"],
    filters: [{ column: "order_id", op: "in", value: orders.map((o) => o.id) }],
    limit: 1000,
  });
  const byOrder = new Map<number, number[]>();
  for (const item of items) {
    const key = Number(item.order_id);
    byOrder.set(key, [...(byOrder.get(key) ?? []), Number(item.quantity)]);
  }
  return {
    orders: orders.map((order) => {
      const quantities = byOrder.get(Number(order.id)) ?? [];
      return {
        order_id: order.id, status: order.status, total: order.total,
        lines: quantities.length, quantity: quantities.reduce((sum, q) => sum + q, 0),
      };
    }),
  };
}
