// Money as integer cents, shared by create_order and payment_webhook (imported as "../../lib/money.ts").
// Prices are numeric(10, 2) in Postgres and arrive as strings or numbers; cents avoid float drift.

/** "12.50" | 12.5 → 1250; throws on anything that is not a non-negative amount with at most 2 decimals. */
export function toCents(amount: string | number): number {
  const text = typeof amount === "number" ? amount.toFixed(2) : String(amount).trim();
  if (!/^\d+(\.\d{1,2})?$/.test(text)) throw new FluxError(400, "validation_failed", `not an amount: ${text}`);
  const [whole, fraction = ""] = text.split(".");
  return Number(whole) * 100 + Number(fraction.padEnd(2, "0"));
}

/** 1250 → "12.50", the shape Postgres numeric(12, 2) columns take and return. */
export function fromCents(cents: number): string {
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, "0")}`;
}
