// Types for Flux handlers. Flux injects `ctx` at run time; nothing needs importing.
// Reference this file from your editor config, or keep it at the project root.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Row = Record<string, Json>;
type FilterOp =
  | "eq" | "neq" | "gt" | "gte" | "lt" | "lte" | "like" | "ilike" | "in" | "not_in" | "is_null" | "not_null"
  | "contains" | "contained_by" | "overlaps" | "search";
/** Inside `ctx.db.batch`: a value an earlier query returned — "0.id" (its first row), "0.2.id", "0.*.id" (all rows). */
type FluxRef = { $ref: string };
type FluxValue = Json | FluxRef;
/** One condition. `path` compares a value inside a json/jsonb column; `config` is the text-search language. */
interface FluxCondition {
  column: string;
  op: FilterOp;
  value?: FluxValue | FluxValue[];
  path?: (string | number)[];
  config?: string;
}
/** Conditions combine with AND; `or`, `and` and `not` nest. */
type FluxFilter = FluxCondition | { or: FluxFilter[] } | { and: FluxFilter[] } | { not: FluxFilter };
type FluxOrder = { column: string; direction?: "asc" | "desc" };
/** Related rows along a foreign key (either direction): an object for to-one, a list for to-many. */
interface FluxEmbed {
  table: string;
  /** The foreign-key column or constraint, when several keys link the two tables. */
  via?: string;
  columns?: string[];
  filters?: FluxFilter[];
  order?: FluxOrder[];
  limit?: number;
  offset?: number;
  /** Keep only the parent rows that have a match. */
  inner?: boolean;
  embed?: Record<string, FluxEmbed>;
}
interface FluxAggregate {
  fn: "count" | "sum" | "avg" | "min" | "max";
  /** Omit for count(*). */
  column?: string;
  distinct?: boolean;
  /** The result key (default: "count", or "<fn>_<column>"). */
  as?: string;
}
type FluxUpdateValue = FluxValue | { increment: number | FluxRef } | { decrement: number | FluxRef };

interface FluxQuery {
  table: string;
  operation: "select" | "insert" | "update" | "delete" | "upsert";
  columns?: string[];
  filters?: FluxFilter[];
  order?: FluxOrder[];
  limit?: number;
  offset?: number;
  data?: Record<string, FluxUpdateValue> | Record<string, FluxValue>[];
  returning?: string[];
  on_conflict?: string[];
  cache?: { ttl_s: number };
  embed?: Record<string, FluxEmbed>;
  distinct?: boolean;
  group_by?: string[];
  aggregates?: FluxAggregate[];
  /** Conditions on aggregates, by their result key. */
  having?: FluxFilter[];
  /** Resolve to a FluxPage with the exact number of matching rows (limit: 0 for the count alone). */
  count?: "exact";
  /** Resolve to a FluxPage (rows, truncated, next_offset) instead of a bare list. */
  page?: boolean;
}
interface FluxPage<T = Row> {
  rows: T[];
  /** More rows match than were returned (a select without limit returns at most 100). */
  truncated: boolean;
  /** The offset of the next page, or null on the last one. */
  next_offset: number | null;
  count?: number;
}

interface FluxAuth {
  readonly type: "none" | "api_key" | "jwt";
  /** api_key: the key's name (`flux keys create --name ...`) and scope. */
  readonly key_name?: string;
  readonly scope?: string;
  /** jwt: the token's `sub` (absent when it has none) and every verified claim. */
  readonly subject?: string;
  readonly claims?: Record<string, Json>;
}

interface FluxRequest {
  readonly method: string;
  /** The path as requested (`/orders/42`); `route` is the declared one (`/orders/{id}`). */
  readonly path: string;
  readonly route: string;
  /** Path parameters by name. */
  readonly params: Readonly<Record<string, string>>;
  /** Every query parameter with all its values, in order: `?tag=a&tag=b` gives `{ tag: ["a", "b"] }`. */
  readonly query: Readonly<Record<string, readonly string[]>>;
  /** Lower-case names; repeated headers joined with ",". Cookies are not here but in `cookies`. */
  readonly headers: Readonly<Record<string, string>>;
  readonly cookies: Readonly<Record<string, string>>;
  /** The raw body, whatever the content type (verify a webhook signature over `await body.bytes()`).
   *  Read on first use, like a Web Request's body; each call returns a fresh copy. */
  readonly body: { bytes(): Promise<Uint8Array<ArrayBuffer>>; text(): Promise<string>; readonly length: number };
}

/** One invocation's context. A warm worker runs several invocations of its function at once (under `flux dev`
 *  up to the function's `concurrency`; a Lambda instance serves one request at a time): each has its own `ctx`, and its logs, spans,
 *  calls and timers are its own, but module-level variables are shared between them, as in a Deno or Node
 *  server — keep per-request data in locals, not in module state. An invocation that runs past `timeout_ms`
 *  stops its worker, so the others running in it at that moment fail with a 503 `worker_recycled` (never
 *  retried for you); a worker that crashes fails all of them with a 502 `runtime_crashed`; timers or calls
 *  still running 200 ms after the handler returned make the worker retire (it finishes the invocations in
 *  flight, takes no new one, then stops). */
interface FluxContext {
  readonly requestId: string;
  readonly traceId: string;
  /** Who called. `type` is "none" for a public route and for an anonymous caller of an optional route
   *  (`"auth": {"mode": "jwt", "optional": true}`). */
  readonly auth: FluxAuth;
  /** The HTTP request as the client sent it; undefined for queued jobs and `ctx.function.invoke` calls. */
  readonly request?: FluxRequest;
  /** Set when the function runs from the queue. */
  readonly job?: { id: string; attempt: number };
  readonly function: {
    name: string;
    /** Runs another function with this request's auth: the payload must pass the callee's input_schema, and a
     *  callee with auth "api_key" or "jwt" needs a caller authenticated the same way, unless it is
     *  `"internal": true` (then it has no public route and any function may invoke it). Not rate-limited.
     *  The callee must be listed in this function's flux.json `"invokes"`; any other name throws a 403
     *  `invoke_not_declared` that names the declaration to add. */
    /** A callee that returns a `Response` gives `{ status, headers: [name, value][], body, base64 }`. */
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
  /** Runs as the database's application role: select, insert, update and delete on the application's tables,
   *  nothing else. A statement it may not run throws a 403 `permission_denied` naming the operation and table;
   *  a bad query a 400 `invalid_query`; an unreachable database a 503 `database_unavailable`. */
  readonly db: {
    query<T extends Row = Row>(query: FluxQuery & ({ count: "exact" } | { page: true })): Promise<FluxPage<T>>;
    query<T extends Row = Row>(query: FluxQuery): Promise<T[]>;
    /** One transaction; a page or count query's result is a FluxPage. */
    batch<T extends unknown[] = Row[][]>(queries: FluxQuery[]): Promise<T>;
  };
  readonly queue: {
    /** Enqueues a job for an async function listed in this function's flux.json `"pushes"`; any other name
     *  throws a 403 `push_not_declared` that names the declaration to add. */
    push(functionName: string, payload?: Json, options?: { delay_s?: number; idempotency_key?: string; group?: string }):
      Promise<{ job_id: string }>;
  };
  /** A custom child span; the attribute `root` is reserved (only the gateway and the queue start requests). */
  span<T>(name: string, fn: () => Promise<T> | T, attrs?: Record<string, Json>): Promise<T>;
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
}

/** A handler returns a plain value (200 JSON; 202 for async functions) or a Web `Response` for full control:
 *  `new Response(null, { status: 204 })`, `Response.json(body, { status: 201, headers: { location } })`,
 *  `Response.redirect(url, 303)`, text or binary bodies, several `set-cookie` headers. */
type FluxResult = Json | Response;

/** Throw to answer with a chosen status: `throw new FluxError(404, "not_found", "no such order")`. */
declare class FluxError extends Error {
  constructor(status: number, code: string, message: string);
  readonly status: number;
  readonly code: string;
}
