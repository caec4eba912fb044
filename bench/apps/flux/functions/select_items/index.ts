// GET /items?category=c7: a filtered select on an indexed column, at most 20 rows.
export default async function handler(
  input: { category?: string },
  ctx: { db: { query(q: unknown): Promise<Record<string, unknown>[]> } },
) {
  const items = await ctx.db.query({
    table: "items", operation: "select",
    columns: ["id", "name", "category", "price", "created_at"],
    filters: [{ column: "category", op: "eq", value: input.category ?? "c0" }],
    limit: 20,
  });
  return { items };
}
