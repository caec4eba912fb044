/// <reference path="../../flux.d.ts" />
import { fromCents, toCents } from "../../lib/money.ts";

// POST /orders {"user_id": 1, "items": [{"product_id": 2, "quantity": 1}]} → 201, Location: /orders/<id>
// Prices come from the catalogue (one `in` query for all products), never from the client.
type Line = { product_id: number; quantity: number };

export default async function handler(input: { user_id: number; items: Line[] }, ctx: FluxContext) {
  const items = Array.isArray(input?.items) ? input.items : [];
  if (!input?.user_id || items.length === 0) {
    throw new FluxError(400, "validation_failed", "an order needs a user_id and at least one item");
  }

  const [user] = await ctx.db.query({
    table: "users", operation: "select", columns: ["id", "email"],
    filters: [{ column: "id", op: "eq", value: input.user_id }], limit: 1,
  });
  if (!user) throw new FluxError(404, "not_found", `no user ${input.user_id}`);

  const productIds = [...new Set(items.map((i) => i.product_id))];
  const products = await ctx.db.query({
    table: "products", operation: "select", columns: ["id", "price"],
    filters: [{ column: "id", op: "in", value: productIds }],
  });
  const priceOf = new Map(products.map((p) => [Number(p.id), p.price as string]));
  const missing = productIds.filter((id) => !priceOf.has(id));
  if (missing.length > 0) throw new FluxError(404, "not_found", `no product ${missing.join(", ")}`);

  const cents = items.reduce((sum, i) => sum + toCents(priceOf.get(i.product_id)!) * i.quantity, 0);
  const [order] = await ctx.db.query({
    table: "orders", operation: "insert",
    data: { user_id: user.id, customer_email: user.email, status: "pending", total: fromCents(cents) },
  });

  let lines: Row[];
  try {
    lines = await ctx.db.query({
      table: "order_items", operation: "insert",
      data: items.map((i) => ({
        order_id: order.id, product_id: i.product_id, quantity: i.quantity, unit_price: priceOf.get(i.product_id)!,
      })),
    });
  } catch (err) {
    // Keep the order and its lines all-or-nothing: remove the order if its lines could not be written.
    await ctx.db.query({ table: "orders", operation: "delete", filters: [{ column: "id", op: "eq", value: order.id }] });
    throw err;
  }

  // The invoice is sent in the background: the response does not wait for it, and the job
  // appears in this request's trace under its async branch.
  const { job_id } = await ctx.queue.push("send_invoice", { orderId: order.id }, { idempotency_key: `invoice-${order.id}` });
  ctx.log.info("order created", { orderId: order.id, total: order.total, invoiceJob: job_id });
  // 201 Created with the new order's address, as a REST client expects.
  return Response.json({ ...order, items: lines, invoice_job_id: job_id },
                       { status: 201, headers: { location: `/orders/${order.id}` } });
}
