/// <reference path="../../flux.d.ts" />

// A webhook delivery that fails its first `fail_times` attempts, to show retries with backoff
// and the dead-letter queue: {"webhook_id": "w1", "fail_times": 2} succeeds on attempt 3;
// {"webhook_id": "w2", "fail_times": 99} fails all 3 attempts and lands in `flux queue dlq list`.
// Each attempt is recorded in webhook_attempts, which is how the handler counts them.
export default async function handler(input: { webhook_id: string; fail_times?: number }, ctx: FluxContext) {
  if (!input?.webhook_id) {
    throw new FluxError(400, "validation_failed", "flaky_webhook needs a webhook_id");
  }
  await ctx.db.query({ table: "webhook_attempts", operation: "insert", data: { webhook_id: input.webhook_id } });
  const attempts = await ctx.db.query({
    table: "webhook_attempts", operation: "select", columns: ["id"],
    filters: [{ column: "webhook_id", op: "eq", value: input.webhook_id }],
  });
  const failTimes = input.fail_times ?? 0;
  if (attempts.length <= failTimes) {
    ctx.log.warn("webhook endpoint unavailable", { webhook_id: input.webhook_id, attempt: attempts.length });
    throw new Error(`webhook ${input.webhook_id}: endpoint unavailable (attempt ${attempts.length} of ${failTimes} planned failures)`);
  }
  ctx.log.info("webhook delivered", { webhook_id: input.webhook_id, attempt: attempts.length });
  return { delivered: true, attempts: attempts.length };
}
