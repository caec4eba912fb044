/// <reference path="../../flux.d.ts" />
import { toCents } from "../../lib/money.ts";
import { validSignature } from "../../lib/signature.ts";

// POST /webhooks/payment, as a payment provider sends it: a form post
//   order_id=42&amount=31.50&status=paid
// with "x-signature: sha256=<hex HMAC-SHA256 of the raw body>" under the shared secret
// (flux secrets set PAYMENT_WEBHOOK_SECRET ...). The signature is checked over the exact bytes
// received (ctx.request.body), before any field is trusted; `input` holds the parsed form fields.
export default async function handler(input: Record<string, string>, ctx: FluxContext) {
  const secret = await ctx.secrets.get("PAYMENT_WEBHOOK_SECRET");
  const request = ctx.request!;
  if (!(await validSignature(secret, await request.body.bytes(), request.headers["x-signature"]))) {
    throw new FluxError(401, "invalid_signature", "the webhook signature does not match its body");
  }
  if (input.status !== "paid" || !/^\d+$/.test(input.order_id ?? "")) {
    throw new FluxError(400, "validation_failed", "expected order_id and status=paid");
  }
  const [order] = await ctx.db.query({
    table: "orders", operation: "select", columns: ["id", "status", "total"],
    filters: [{ column: "id", op: "eq", value: input.order_id }], limit: 1,
  });
  if (!order) throw new FluxError(404, "not_found", `no order ${input.order_id}`);
  if (toCents(input.amount) !== toCents(order.total as string)) {
    throw new FluxError(409, "amount_mismatch", `order ${order.id} totals ${order.total}, the payment was ${input.amount}`);
  }
  if (order.status === "pending") {
    await ctx.db.query({ table: "orders", operation: "update", data: { status: "paid" },
                         filters: [{ column: "id", op: "eq", value: order.id }, { column: "status", op: "eq", value: "pending" }] });
  }
  ctx.log.info("payment received", { orderId: order.id });
  return new Response(null, { status: 204 });
}
