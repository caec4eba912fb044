/// <reference path="../../flux.d.ts" />

// GET /reports/sales?since=2024-06-01&top=5: orders per status (GROUP BY with count/sum/avg), the
// best-selling products (product_sales, a GROUP BY view read like a table) and how many customers
// ordered at all (count of distinct user ids) — one transaction, three statements, no rows in JS.
export default async function handler(input: { since?: string; top?: string }, ctx: FluxContext) {
  const top = Math.min(Math.max(Number(input.top ?? 5) || 5, 1), 50);
  const since: FluxFilter[] = input.since ? [{ column: "created_at", op: "gte", value: input.since }] : [];
  const [byStatus, topProducts, customers] = await ctx.db.batch([
    {
      table: "orders", operation: "select", filters: since, group_by: ["status"],
      aggregates: [
        { fn: "count", as: "orders" },
        { fn: "sum", column: "total", as: "revenue" },
        { fn: "avg", column: "total", as: "average" },
      ],
      order: [{ column: "revenue", direction: "desc" }],
    },
    {
      table: "product_sales", operation: "select", columns: ["sku", "name", "orders", "units", "revenue"],
      order: [{ column: "units", direction: "desc" }, { column: "sku" }], limit: top,
    },
    {
      table: "orders", operation: "select", filters: [...since, { column: "status", op: "neq", value: "cancelled" }],
      aggregates: [{ fn: "count", column: "user_id", distinct: true, as: "customers" }],
    },
  ]);
  return {
    by_status: byStatus.map((row) => ({ ...row, average: Math.round(Number(row.average) * 100) / 100 })),
    top_products: topProducts,
    customers: customers[0].customers,
  };
}
