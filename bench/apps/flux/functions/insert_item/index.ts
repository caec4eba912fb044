// POST /items {"name", "category", "price"}: one insert, the new row back.
export default async function handler(
  input: { name: string; category: string; price: number },
  ctx: { db: { query(q: unknown): Promise<Record<string, unknown>[]> } },
) {
  const [row] = await ctx.db.query({
    table: "items", operation: "insert",
    data: { name: input.name, category: input.category, price: input.price },
  });
  return row;
}
