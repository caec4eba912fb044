// The deployed tier's ordered async function (FIFO per `account`): records every attempt it runs in
// ordered_runs (group, sequence number, attempt, clock time), then fails the first `fail_times` attempts,
// so the tier can read back in which order the worker ran each group's jobs and that a failure held its group.
export default async function handler(input: { account: string; seq: number; fail_times?: number }, ctx: any) {
  await ctx.db.query({
    table: "ordered_runs", operation: "insert",
    data: { account: input.account, seq: input.seq, attempt: ctx.job.attempt, job_id: ctx.job.id },
  });
  if (ctx.job.attempt <= (input.fail_times ?? 0)) {
    throw new Error(`ordered_step ${input.account}#${input.seq}: planned failure on attempt ${ctx.job.attempt}`);
  }
  return { account: input.account, seq: input.seq };
}
