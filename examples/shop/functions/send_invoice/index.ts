/// <reference path="../../flux.d.ts" />

// Runs from the queue after create_order pushes {orderId}. Delivery is at least once, so the
// handler first looks for an invoice of this order and only inserts when there is none
// (invoices.order_id is also UNIQUE, so a race could never create two).
export default async function handler(input: { orderId: number }, ctx: FluxContext) {
  if (input?.orderId === undefined || input.orderId === null) {
    throw new FluxError(400, "validation_failed", "send_invoice needs an orderId");
  }
  const existing = await ctx.db.query({
    table: "invoices", operation: "select",
    filters: [{ column: "order_id", op: "eq", value: input.orderId }], limit: 1,
  });
  if (existing.length > 0) {
    ctx.log.info("invoice already sent", { orderId: input.orderId, invoiceId: existing[0].id });
    return { invoiceId: existing[0].id, duplicate: true };
  }
  const [order] = await ctx.db.query({
    table: "orders", operation: "select",
    filters: [{ column: "id", op: "eq", value: input.orderId }], limit: 1,
  });
  if (!order) {
    throw new Error(`order ${input.orderId} not found`);
  }
  const [invoice] = await ctx.db.query({
    table: "invoices", operation: "insert",
    data: { order_id: input.orderId, amount: order.total ?? 0, status: "sent" },
  });
  ctx.log.info("invoice sent", { orderId: input.orderId, invoiceId: invoice.id });
  return { invoiceId: invoice.id };
}
