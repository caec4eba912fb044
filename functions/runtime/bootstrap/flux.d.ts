// Types for Flux handlers. Flux injects `ctx` at run time; nothing needs importing.
// Reference this file from your editor config, or keep it at the project root.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Row = Record<string, Json>;
type FilterOp = "eq" | "neq" | "gt" | "gte" | "lt" | "lte" | "like" | "ilike" | "in" | "not_in" | "is_null" | "not_null";

interface FluxQuery {
  table: string;
  operation: "select" | "insert" | "update" | "delete" | "upsert";
  columns?: string[];
  filters?: { column: string; op: FilterOp; value?: Json }[];
  order?: { column: string; direction?: "asc" | "desc" }[];
  limit?: number;
  offset?: number;
  data?: Row | Row[];
  returning?: string[];
  on_conflict?: string[];
  cache?: { ttl_s: number };
}

interface FluxContext {
  readonly requestId: string;
  readonly traceId: string;
  readonly auth: { type: "none" | "api_key" | "jwt"; key_name?: string; scope?: string; claims?: Record<string, Json> };
  /** Set when the function runs from the queue. */
  readonly job?: { id: string; attempt: number };
  readonly function: {
    name: string;
    /** Runs another function with this request's auth: the payload must pass the callee's input_schema, and a
     *  callee with auth "api_key" or "jwt" needs a caller authenticated the same way, unless it is
     *  `"internal": true` (then it has no public route and any function may invoke it). Not rate-limited. */
    invoke<T = Json>(name: string, payload?: Json): Promise<T>;
  };
  readonly log: {
    debug(message: string, fields?: Record<string, Json>): void;
    info(message: string, fields?: Record<string, Json>): void;
    warn(message: string, fields?: Record<string, Json>): void;
    error(message: string, fields?: Record<string, Json>): void;
  };
  /** Only the names in this function's flux.json `"secrets"` (or the project's default list) are readable;
   *  any other name throws a 403 `secret_not_declared` that names the declaration to add. Values are redacted
   *  from every log, span and error. */
  readonly secrets: { get(name: string, fallback?: string): Promise<string> };
  readonly db: {
    query<T extends Row = Row>(query: FluxQuery): Promise<T[]>;
    batch(queries: FluxQuery[]): Promise<Row[][]>;
  };
  readonly queue: {
    push(functionName: string, payload?: Json, options?: { delay_s?: number; idempotency_key?: string; group?: string }):
      Promise<{ job_id: string }>;
  };
  /** A custom child span; the attribute `root` is reserved (only the gateway and the queue start requests). */
  span<T>(name: string, fn: () => Promise<T> | T, attrs?: Record<string, Json>): Promise<T>;
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
}

/** Throw to answer with a chosen status: `throw new FluxError(404, "not_found", "no such order")`. */
declare class FluxError extends Error {
  constructor(status: number, code: string, message: string);
  readonly status: number;
  readonly code: string;
}
