/// <reference path="../../flux.d.ts" />

// GET /reports/orders-slow?limit=20: a per-order summary, written the slow way on purpose.
// One query for the orders, then one more per order, awaited one after another: an N+1 loop.
// Its trace shows an n1_warnings entry; orders_report_batched is the same report in two queries.
export default async function handler(input: { limit?: string }, ctx: FluxContext) {
  const limit = Math.min(Math.max(Number(input?.limit ?? 20) || 20, 1), 100);
  const orders = await ctx.db.query({
    table: "orders", operation: "select", columns: ["id", "status", "total"],
    order: [{ column: "id" }], limit,
  });
  const report = [];
  for (const order of orders) {
    const items = await ctx.db.query({
      table: "order_items", operation: "select", columns: ["quantity"],
      filters: [{ column: "order_id", op: "eq", value: order.id }],
    });
    report.push({
      order_id: order.id, status: order.status, total: order.total,
      lines: items.length, quantity: items.reduce((sum, i) => sum + Number(i.quantity), 0),
    });
  }
  return { orders: report };
}
