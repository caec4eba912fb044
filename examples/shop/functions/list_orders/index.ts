/// <reference path="../../flux.d.ts" />

// GET /orders?status=paid&customer_email=ada@example.com&user_id=1&limit=20&offset=0
// Query-string values arrive as strings; the engine converts them for their columns.
// Auth is optional: anonymous callers see every order (the demo's back office), while a caller
// with an API key named "user-<id>" (flux keys create --name user-3) sees only that user's orders.
export default async function handler(input: Record<string, string>, ctx: FluxContext) {
  const filters: FluxQuery["filters"] = [];
  const own = /^user-(\d+)$/.exec(ctx.auth.key_name ?? "")?.[1];
  if (own) filters.push({ column: "user_id", op: "eq", value: own });
  for (const column of ["status", "customer_email", "user_id"]) {
    if (input[column] !== undefined && input[column] !== "") {
      filters.push({ column, op: "eq", value: input[column] });
    }
  }
  if (input.since) filters.push({ column: "created_at", op: "gte", value: input.since });

  const limit = Math.min(Math.max(Number(input.limit ?? 20) || 20, 1), 100);
  const offset = Math.max(Number(input.offset ?? 0) || 0, 0);
  const orders = await ctx.db.query({
    table: "orders", operation: "select",
    columns: ["id", "user_id", "customer_email", "status", "total", "created_at"],
    filters, order: [{ column: "created_at", direction: "desc" }, { column: "id", direction: "desc" }],
    limit, offset,
  });
  return { orders, limit, offset, count: orders.length, ...(own ? { user_id: Number(own) } : {}) };
}
