// POST /orders {"item_id", "quantity"}: the `real` scenario. The item with its 5 latest orders (one
// select with an embed), the new order, and a job for order_placed.
type Db = { query(q: unknown): Promise<Record<string, unknown>[]> };
type Queue = { push(name: string, payload: unknown): Promise<unknown> };

export default async function handler(
  input: { item_id: number; quantity: number },
  ctx: { db: Db; queue: Queue },
) {
  const [item] = await ctx.db.query({
    table: "items", operation: "select", columns: ["id", "name", "price"],
    filters: [{ column: "id", op: "eq", value: input.item_id }],
    embed: { orders: { table: "orders", columns: ["id", "quantity", "created_at"],
                       order: [{ column: "id", direction: "desc" }], limit: 5 } },
  });
  if (!item) throw new FluxError(404, "not_found", "no such item");
  const [order] = await ctx.db.query({
    table: "orders", operation: "insert", data: { item_id: input.item_id, quantity: input.quantity },
  });
  await ctx.queue.push("order_placed", { order_id: order.id });
  return { item, order };
}
