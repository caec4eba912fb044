// What ctx.db lets user code aim at Flux's own bookkeeping (the migration history) or past its rights:
// each attempt's outcome, so the deployed tier can check that none of them got through.
export default async function handler(input: { attempts?: string[] }, ctx: any) {
  const tries: Record<string, unknown> = {
    delete_history: { table: "flux_migrations", operation: "delete", filters: [{ column: "filename", op: "neq", value: "" }] },
    insert_history: { table: "flux_migrations", operation: "insert", data: { filename: "999_evil.sql", checksum: "x", duration_ms: 0 } },
    read_history: { table: "flux_migrations", operation: "select" },
    system_catalog: { table: "pg_authid", operation: "select" },
    orders: { table: "orders", operation: "select", columns: ["id"], limit: 1 },
  };
  const outcome: Record<string, unknown> = {};
  for (const name of input.attempts ?? Object.keys(tries)) {
    try {
      const rows = await ctx.db.query(tries[name]);
      outcome[name] = { ok: true, rows: Array.isArray(rows) ? rows.length : rows };
    } catch (err) {
      const e = err as { status?: number; code?: string; message?: string };
      outcome[name] = { ok: false, status: e.status, code: e.code, message: e.message };
    }
  }
  return outcome;
}
