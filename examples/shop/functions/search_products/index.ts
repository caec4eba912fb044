/// <reference path="../../flux.d.ts" />

// GET /products/search?q=wireless headphones&tag=desk&max_price=150&limit=10&offset=0
// Full-text search over name and description (web-search syntax: "quoted phrases", -exclusions, or)
// OR a tag match, narrowed by price, with the exact number of matches next to the page.
export default async function handler(
  input: { q?: string; tag?: string; max_price?: string; limit?: string; offset?: string },
  ctx: FluxContext,
) {
  const anyOf: FluxFilter[] = [];
  if (input.q?.trim()) anyOf.push({ column: "search", op: "search", value: input.q, config: "english" });
  if (input.tag?.trim()) anyOf.push({ column: "tags", op: "contains", value: [input.tag.trim()] });
  if (anyOf.length === 0) {
    throw new FluxError(400, "validation_failed", "give a search text (q) or a tag");
  }
  const filters: FluxFilter[] = [{ or: anyOf }];
  if (input.max_price) filters.push({ column: "price", op: "lte", value: input.max_price });
  const limit = Math.min(Math.max(Number(input.limit ?? 10) || 10, 1), 50);
  const offset = Math.max(Number(input.offset ?? 0) || 0, 0);
  const page = await ctx.db.query({
    table: "products", operation: "select", columns: ["id", "sku", "name", "price", "tags"],
    filters, order: [{ column: "price" }, { column: "id" }], limit, offset, count: "exact",
  });
  return { products: page.rows, total: page.count, next_offset: page.next_offset };
}
