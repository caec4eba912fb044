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
    query<T extends Row = Row>(query: FluxQuery & ({ count: "exact" } | { page: true })): Promise<FluxPage<T>>;
    query<T extends Row = Row>(query: FluxQuery): Promise<T[]>;
    /** One transaction; a page or count query's result is a FluxPage. */
    batch<T extends unknown[] = Row[][]>(queries: FluxQuery[]): Promise<T>;
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
