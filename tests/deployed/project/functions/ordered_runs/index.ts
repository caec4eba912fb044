// The deployed tier's read-back of ordered_step: one group's attempts in the order they were recorded.
export default async function handler(input: { account: string }, ctx: any) {
  const runs = await ctx.db.query({
    table: "ordered_runs", operation: "select", columns: ["id", "seq", "attempt", "job_id", "ran_at"],
    filters: [{ column: "account", op: "eq", value: input.account }], order: [{ column: "id", direction: "asc" }],
  });
  return { runs };
}
