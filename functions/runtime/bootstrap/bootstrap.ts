// Flux worker bootstrap: loads one user function and serves invocations from the Python host.
//
// Protocol. The host writes JSON lines to stdin. The worker answers with frames, one JSON line
// each, on a FIFO the host created for this worker (its path is argument 4). The bootstrap opens
// the FIFO and then revokes its own write permission, before any user code loads: user code has
// no handle to the channel and cannot open it, so whatever it writes to stdout or stderr (or
// patches: Deno.stdout, TextEncoder, JSON, Function.prototype, ...) can only become a stray log
// line, never a frame. The functions used to build and write frames are captured here, first.
// Several invocations run at once (the host bounds how many): each has its own ctx, its own RPC
// calls (ctx.db.query, ...) matched by call id, its own timers, and every frame it causes names it
// ("id" of done/idle, "inv" of log/span/call), so the host routes it to that invocation. Module
// state is shared between them, as in any Deno server. Output outside every invocation (module
// code, a timer started at load) is sent with inv 0, which the host records as stray output.
import { AsyncLocalStorage } from "node:async_hooks";

// Primordials: captured before user code exists, called without any lookup user code can patch.
const apply = Reflect.apply;
const stringify = JSON.stringify;
const parseJson = JSON.parse;
const encode = TextEncoder.prototype.encode;
const subarray = Uint8Array.prototype.subarray;
const writeSync = Deno.FsFile.prototype.writeSync;
const createNull = Object.create;
const assign = Object.assign;
const realSetTimeout = globalThis.setTimeout;
const realSetInterval = globalThis.setInterval;
const realClearTimeout = globalThis.clearTimeout;
const realClearInterval = globalThis.clearInterval;
const realQueueMicrotask = globalThis.queueMicrotask;
// What a returned Response is read with: the class, its getters and body reader, captured so that
// user code patching Response.prototype or Headers.prototype cannot change what the client receives.
const ResponseClass = globalThis.Response;
const responseStatus = Object.getOwnPropertyDescriptor(Response.prototype, "status")!.get!;
const responseHeaders = Object.getOwnPropertyDescriptor(Response.prototype, "headers")!.get!;
const responseArrayBuffer = Response.prototype.arrayBuffer;
const headersForEach = Headers.prototype.forEach;
const headersGetSetCookie = Headers.prototype.getSetCookie;
const Uint8ArrayClass = Uint8Array;
const fromCharCode = String.fromCharCode;
const realBtoa = globalThis.btoa;
const realAtob = globalThis.atob;
// Native base64 (V8 13+, Deno 2.x); the loops below are the fallback for older runtimes.
const nativeToBase64 = (Uint8Array.prototype as any).toBase64 as (() => string) | undefined;
const nativeFromBase64 = (Uint8Array as any).fromBase64 as ((text: string) => Uint8Array) | undefined;
const freeze = Object.freeze;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
interface Scope { inv: number; spanId: string }
interface Pending { resolve: (value: any) => void; reject: (error: unknown) => void }
// What one invocation still has scheduled: its live timers and unanswered calls. "running" until its
// done frame; after it, "settling" while anything is left (the idle frame says when nothing is).
interface Work { timers: Set<number>; calls: number; running: boolean }

const entryUrl = Deno.args[0];
const functionName = Deno.args[1] ?? "function";
const functionDir = Deno.args[2] ?? "";
const channelPath = Deno.args[3] ?? "";
if (!channelPath) {
  console.error("flux bootstrap: no protocol channel given (argument 4)");
  Deno.exit(70);
}
const channel = Deno.openSync(channelPath, { write: true });
Deno.permissions.revokeSync({ name: "write", path: channelPath });
const encoder = new TextEncoder();
const scope = new AsyncLocalStorage<Scope>();
const pending = new Map<number, Pending>();
const MAX_RESULT_CHARS = 32 * 1024 * 1024;  // well under the host's 64 MiB frame limit
// Per-line bounds applied here so a huge log line never crosses the channel (the host enforces
// the per-request totals whatever arrives).
const MAX_LOG_MESSAGE_CHARS = 16 * 1024;
const MAX_FIELDS_CHARS = 64 * 1024;
let nextCallId = 1;

function frameOf(fields: Record<string, unknown>): Record<string, unknown> {
  // No prototype: an Object.prototype.toJSON planted by user code cannot replace the frame.
  return assign(createNull(null), fields);
}

function writeLine(text: string): void {
  const bytes: Uint8Array = apply(encode, encoder, [text]);
  let written = 0;
  while (written < bytes.length) written += apply(writeSync, channel, [apply(subarray, bytes, [written])]);
}

// Done and idle frames are held until the end of the current burst of microtasks, so the invocations that
// finish together (they started together: the host writes them in one batch) go out in one write. Any
// other frame is written at once, after whatever is held, so the order on the channel is the order here,
// and a log line written just before user code blocks or crashes is never held back.
let held: string[] = [];

function flushHeld(): void {
  if (!held.length) return;
  const text = held.join("");
  held = [];
  writeLine(text);
}

function writeFrame(fields: Record<string, unknown>, hold = false): void {
  const frame = frameOf(fields);
  let line: string;
  try {
    line = apply(stringify, JSON, [frame]);
  } catch (_err) {
    line = apply(stringify, JSON, [assign(frame, { value: undefined, fields: undefined, unserializable: true })]);
  }
  if (hold) {
    if (!held.length) apply(realQueueMicrotask, globalThis, [flushHeld]);
    held.push(`${line}\n`);
  } else if (held.length) {
    held.push(`${line}\n`);
    flushHeld();
  } else {
    writeLine(`${line}\n`);
  }
}

// Timers user code starts are counted per invocation, so the host learns when an invocation returned
// while work was still scheduled (it then waits a grace period and retires the worker).
const work = new Map<number, Work>();
const timerOwner = new Map<number, number>();

function workOf(inv: number): Work | undefined {
  if (!inv) return undefined;  // outside every invocation: nobody waits for it
  let w = work.get(inv);
  if (!w) {
    w = { timers: new Set(), calls: 0, running: false };
    work.set(inv, w);
  }
  return w;
}

function pendingWork(w: Work): number {
  return w.timers.size + w.calls;
}

// Called whenever an invocation's work shrinks: once it returned and nothing is left, say so (once).
function maybeIdle(inv: number): void {
  const w = work.get(inv);
  if (!w || w.running || pendingWork(w) !== 0) return;
  work.delete(inv);
  writeFrame({ t: "idle", id: inv }, true);
}

function trackTimer(id: number): void {
  const inv = scope.getStore()?.inv ?? 0;
  const w = workOf(inv);
  if (!w) return;
  w.timers.add(id);
  timerOwner.set(id, inv);
}

function untrackTimer(id: number): void {
  const inv = timerOwner.get(id);
  if (inv === undefined) return;
  timerOwner.delete(id);
  work.get(inv)?.timers.delete(id);
  maybeIdle(inv);
}

(globalThis as any).setTimeout = (fn: unknown, ms?: number, ...args: unknown[]) => {
  const id: number = apply(realSetTimeout, globalThis, [(...a: unknown[]) => {
    try {
      if (typeof fn === "function") apply(fn, globalThis, a);
    } finally {
      untrackTimer(id);
    }
  }, ms, ...args]);
  trackTimer(id);
  return id;
};
(globalThis as any).setInterval = (fn: unknown, ms?: number, ...args: unknown[]) => {
  const id: number = apply(realSetInterval, globalThis, [fn, ms, ...args]);
  trackTimer(id);
  return id;
};
(globalThis as any).clearTimeout = (id?: number) => {
  apply(realClearTimeout, globalThis, [id]);
  if (id !== undefined) untrackTimer(id);
};
(globalThis as any).clearInterval = (id?: number) => {
  apply(realClearInterval, globalThis, [id]);
  if (id !== undefined) untrackTimer(id);
};

function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

function newSpanId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function toBase64(bytes: Uint8Array): string {
  if (nativeToBase64) return apply(nativeToBase64, bytes, []);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += apply(fromCharCode, String, Array.from(apply(subarray, bytes, [i, i + 0x8000]) as Uint8Array));
  }
  return apply(realBtoa, globalThis, [binary]);
}

function fromBase64(text: string): Uint8Array {
  if (nativeFromBase64) return apply(nativeFromBase64, Uint8ArrayClass, [text]);
  const binary: string = apply(realAtob, globalThis, [text]);
  const bytes = new Uint8ArrayClass(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// Bodies of these types travel as text when they are valid UTF-8; everything else as base64 bytes.
const TEXT_TYPE = /^(text\/|application\/(json|xml|javascript|x-www-form-urlencoded)|application\/[a-z0-9.+-]+\+(json|xml))/i;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const lenientUtf8 = new TextDecoder("utf-8");

// A returned Response as the done frame's "response" field: status, every header as a [name, value]
// pair (each Set-Cookie its own pair), and the body as text or base64.
async function serialiseResponse(response: Response): Promise<Record<string, unknown>> {
  const status: number = apply(responseStatus, response, []);
  const headers: Headers = apply(responseHeaders, response, []);
  const pairs: string[][] = [];
  apply(headersForEach, headers, [(value: string, name: string) => {
    if (name !== "set-cookie") pairs.push([name, value]);
  }]);
  for (const cookie of apply(headersGetSetCookie, headers, []) as string[]) pairs.push(["set-cookie", cookie]);
  const bytes = new Uint8ArrayClass(await apply(responseArrayBuffer, response, []));
  if (bytes.length > MAX_RESULT_CHARS * 3 / 4) {
    throw new FluxError(500, "function_error", `the response body is ${Math.round(bytes.length / 1048576)} MiB; the limit is ${MAX_RESULT_CHARS * 3 / 4 / 1048576} MiB`);
  }
  const type = pairs.find(([name]) => name === "content-type")?.[1] ?? "";
  let body = "";
  let base64 = false;
  if (bytes.length && TEXT_TYPE.test(type)) {
    try {
      body = strictUtf8.decode(bytes);
    } catch (_err) {
      base64 = true;
    }
  } else if (bytes.length) {
    base64 = true;
  }
  if (base64) body = toBase64(bytes);
  return { status, headers: pairs, body, base64 };
}

// ctx.request: the HTTP request as the client sent it (absent for queued jobs and ctx.function.invoke).
// The raw body is fetched from the host on first use, like a Web Request's body, so a function that
// never reads it does not pay for a second copy of it.
function makeRequest(meta: any, where: () => Scope): unknown {
  if (!meta || typeof meta !== "object") return undefined;
  let fetched: Promise<Uint8Array> | null = null;
  const rawBytes = () => (fetched ??= call(where(), "request.body", {}).then((text: string) => fromBase64(text)));
  return freeze({
    method: String(meta.method ?? ""),
    path: String(meta.path ?? ""),
    route: String(meta.route ?? ""),
    params: freeze({ ...(meta.params ?? {}) }),
    query: freeze(Object.fromEntries(Object.entries(meta.query ?? {}).map(([k, v]) => [k, freeze([...(v as string[])])]))),
    headers: freeze({ ...(meta.headers ?? {}) }),
    cookies: freeze({ ...(meta.cookies ?? {}) }),
    body: freeze({
      length: Number(meta.length ?? 0),
      bytes: async (): Promise<Uint8Array> => (await rawBytes()).slice(),
      text: async (): Promise<string> => lenientUtf8.decode(await rawBytes()),
    }),
  });
}

class FluxError extends Error {
  declare readonly status: number;
  declare readonly code: string;
  declare readonly retryAfter?: string;
  constructor(status: number, code: string, message: string, retryAfter?: string) {
    super(message);
    this.name = "FluxError";
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new TypeError(`FluxError status must be an integer from 400 to 599, got ${status}`);
    }
    if (typeof code !== "string" || !/^[a-z][a-z0-9_]{0,63}$/.test(code)) {
      throw new TypeError(`FluxError code must be snake_case, got ${apply(stringify, JSON, [code])}`);
    }
    // Read-only, so the status the host sees is the one that was validated here.
    Object.defineProperty(this, "status", { value: status, enumerable: true });
    Object.defineProperty(this, "code", { value: code, enumerable: true });
    if (retryAfter !== undefined) Object.defineProperty(this, "retryAfter", { value: retryAfter, enumerable: true });
  }
}
(globalThis as any).FluxError = FluxError;

// Where output of the code running now belongs: the invocation (and span) it runs under, or inv 0.
function currentScope(): Scope {
  return scope.getStore() ?? { inv: 0, spanId: "" };
}

function formatArgs(args: unknown[]): string {
  return args.map((a) => (typeof a === "string" ? a : Deno.inspect(a, { depth: 6, colors: false }))).join(" ");
}

function toFields(value: unknown): Json {
  if (value === undefined || value === null) return {};
  try {
    const text: string = apply(stringify, JSON, [value]);
    if (text === undefined) return {};
    if (text.length > MAX_FIELDS_CHARS) return { "flux.truncated": `fields of ${text.length} characters dropped` };
    return apply(parseJson, JSON, [text]);
  } catch (_err) {
    return { value: Deno.inspect(value, { depth: 4, colors: false }).slice(0, MAX_FIELDS_CHARS) };
  }
}

function emitLog(level: string, message: string, fields: unknown, s: Scope = currentScope()): void {
  const text = message.length > MAX_LOG_MESSAGE_CHARS
    ? `${message.slice(0, MAX_LOG_MESSAGE_CHARS)}... [truncated: ${message.length} characters]` : message;
  writeFrame({ t: "log", inv: s.inv, span: s.spanId, ts_us: nowUs(), level, message: text, fields: toFields(fields) });
}

const consoleLevels: Record<string, string> = { log: "info", info: "info", debug: "debug", warn: "warn", error: "error", trace: "debug" };
for (const [method, level] of Object.entries(consoleLevels)) {
  (console as any)[method] = (...args: unknown[]) => emitLog(level, formatArgs(args), {});
}

function call(s: Scope, method: string, params: unknown): Promise<any> {
  const id = nextCallId++;
  const w = workOf(s.inv);
  if (w) w.calls += 1;
  const settled = () => {
    if (w) w.calls -= 1;
    maybeIdle(s.inv);
  };
  return new Promise((resolve, reject) => {
    pending.set(id, {
      resolve: (v) => { resolve(v); settled(); },
      reject: (e) => { reject(e); settled(); },
    });
    writeFrame({ t: "call", id, inv: s.inv, span: s.spanId, ts_us: nowUs(), method, params: params as Json });
  });
}

function errorFromReply(error: { status?: number; code?: string; message?: string; retry_after?: string }): Error {
  const status = error.status ?? 500;
  const code = error.code && /^[a-z][a-z0-9_]{0,63}$/.test(error.code) ? error.code : "function_error";
  return new FluxError(status >= 400 && status <= 599 ? status : 500, code, error.message ?? "call failed",
                       error.retry_after);
}

async function withSpan<T>(parent: Scope, kind: string, name: string, attrs: Record<string, unknown>,
                           fn: () => Promise<T>): Promise<T> {
  const spanId = newSpanId();
  const start = nowUs();
  const t0 = performance.now();
  let status = "ok";
  const extra: Record<string, unknown> = {};
  try {
    return await scope.run({ inv: parent.inv, spanId }, fn);
  } catch (err) {
    status = "error";
    extra["error.message"] = err instanceof Error ? err.message : String(err);
    throw err;
  } finally {
    writeFrame({
      t: "span", inv: parent.inv,
      span: { span_id: spanId, parent_span_id: parent.spanId || null, kind, name, start_us: start,
              duration_us: Math.round((performance.now() - t0) * 1000), status,
              attrs: toFields({ ...attrs, ...extra }) },
    });
  }
}

// A ctx belongs to its invocation wherever it is called from (even from code running for another one,
// through module state): its logs, spans and calls go to that invocation, under the span active when
// the code runs inside it, else under the invocation's own span.
function makeCtx(message: any, inv: number) {
  const meta = message.ctx ?? {};
  const root: Scope = { inv, spanId: meta.spanId ?? "" };
  const where = (): Scope => {
    const s = scope.getStore();
    return s && s.inv === inv ? s : root;
  };
  const log = (level: string) => (msg: unknown, fields?: unknown) =>
    emitLog(level, typeof msg === "string" ? msg : formatArgs([msg]), fields, where());
  return Object.freeze({
    requestId: meta.requestId as string,
    traceId: meta.traceId as string,
    auth: Object.freeze(meta.auth ?? { type: "none" }),
    request: makeRequest(meta.request, where),
    job: meta.job ? Object.freeze(meta.job) : undefined,
    function: Object.freeze({
      name: functionName,
      invoke: (name: string, payload?: unknown) =>
        call(where(), "function.invoke", { function: name, payload: payload ?? null }),
    }),
    log: Object.freeze({ debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") }),
    secrets: Object.freeze({
      get: async (name: string, fallback?: string): Promise<string> => {
        const value = await call(where(), "secrets.get", { name });
        if (value === null || value === undefined) {
          if (fallback !== undefined) return fallback;
          throw new Error(`Secret "${name}" is not set. Set it with: flux secrets set ${name}`);
        }
        return value as string;
      },
    }),
    db: Object.freeze({
      query: async (query: unknown) => {
        const result = await call(where(), "db.query", query);
        return result.rows;
      },
      batch: async (queries: unknown[]) => {
        const results = await call(where(), "db.batch", queries);
        return results.map((r: any) => r.rows);
      },
    }),
    queue: Object.freeze({
      push: (name: string, payload?: unknown, options?: Record<string, unknown>) =>
        call(where(), "queue.push", { function: name, payload: payload ?? null, options: options ?? {} }),
    }),
    span: <T>(name: string, fn: () => Promise<T> | T, attrs?: Record<string, unknown>) => {
      if (attrs && typeof attrs === "object" && Object.hasOwn(attrs, "root")) {
        throw new TypeError("ctx.span: the 'root' attribute is reserved (only the gateway and the queue start requests)");
      }
      return withSpan(where(), "custom", String(name), attrs ?? {}, async () => await fn());
    },
    fetch: (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
      return withSpan(where(), "http", `${method} ${url.host}`, { "http.method": method, "http.host": url.host, "http.path": url.pathname },
        async () => {
          const response = await fetch(input, init);
          return response;
        });
    },
  });
}

// Where in the user's code an error was thrown: the first stack frame inside the function's folder.
function sourceLocation(stack: string | undefined): { file?: string; line?: number; column?: number } {
  if (!stack) return {};
  const frames = [...stack.matchAll(/(file:\/\/[^\s)]+?):(\d+):(\d+)/g)];
  const dirUrl = functionDir ? new URL(`file://${functionDir.endsWith("/") ? functionDir : functionDir + "/"}`).href : "";
  const frame = frames.find((f) => dirUrl && f[1].startsWith(dirUrl)) ?? frames.find((f) => !f[1].includes("/runtime/bootstrap/"));
  if (!frame) return {};
  let file = decodeURIComponent(frame[1].replace(/^file:\/\//, ""));
  return { file, line: Number(frame[2]), column: Number(frame[3]) };
}

function describeError(err: unknown) {
  if (err instanceof FluxError) {
    return { status: err.status, code: err.code, message: err.message, user: true, retry_after: err.retryAfter,
             stack: err.stack, ...sourceLocation(err.stack) };
  }
  if (err instanceof Error) {
    return { status: 500, code: "function_error", name: err.name, message: `${err.name}: ${err.message}`, stack: err.stack, ...sourceLocation(err.stack) };
  }
  return { status: 500, code: "function_error", name: "Error", message: `Uncaught ${Deno.inspect(err)}` };
}

let handler: ((input: unknown, ctx: unknown) => unknown) | null = null;
let loadError: ReturnType<typeof describeError> | null = null;

async function invoke(message: any): Promise<void> {
  const inv = message.id as number;
  workOf(inv)!.running = true;
  if (!handler) {
    finish(inv, { ok: false, error: loadError });
    return;
  }
  try {
    const ctx = makeCtx(message, inv);
    const value = await scope.run({ inv, spanId: message.ctx?.spanId ?? "" }, async () => await handler!(message.input, ctx));
    if (value instanceof ResponseClass) {
      finish(inv, { ok: true, value: null, response: await serialiseResponse(value) });
      return;
    }
    let text: string;
    try {
      text = value === undefined ? "null" : apply(stringify, JSON, [value]);
    } catch (err) {
      finish(inv, { ok: false, error: { status: 500, code: "function_error", message: `the return value is not JSON: ${(err as Error).message}` } });
      return;
    }
    if (text.length > MAX_RESULT_CHARS) {
      finish(inv, { ok: false, error: { status: 500, code: "function_error", message: `the return value is ${Math.round(text.length / 1048576)} MiB of JSON; the limit is ${MAX_RESULT_CHARS / 1048576} MiB` } });
      return;
    }
    finish(inv, { ok: true, value: apply(parseJson, JSON, [text]) });
  } catch (err) {
    finish(inv, { ok: false, error: describeError(err) });
  }
}

// The done frame says how much work the invocation left scheduled; when some, an "idle" frame follows
// once it has all run (the host retires the worker if that does not happen within a grace period).
function finish(inv: number, outcome: Record<string, unknown>): void {
  const w = workOf(inv)!;
  w.running = false;
  const left = pendingWork(w);
  if (!left) work.delete(inv);
  writeFrame({ t: "done", id: inv, pending: left, ...outcome }, true);
}

function onMessage(message: any): void {
  switch (message.t) {
    case "hello":
      load();
      break;
    case "invoke":
      invoke(message);
      break;
    case "reply": {
      const waiter = pending.get(message.id);
      if (!waiter) return;
      pending.delete(message.id);
      if (message.ok) waiter.resolve(message.value);
      else waiter.reject(errorFromReply(message.error ?? {}));
      break;
    }
  }
}

// Deno names its --allow-read flag when an import reaches outside the sandbox; say what the rule is instead.
function outsideImport(message: string): string | null {
  const match = /Requires read access to "([^"]+)"/.exec(message);
  if (!match) return null;
  return `an import reaches ${match[1]}, outside what a function may read: its own folder and the project's ` +
    `lib/ folder (import shared code as "../../lib/<file>.ts"; npm packages and allow_net hosts are also allowed)`;
}

async function load(): Promise<void> {
  try {
    const mod = await import(entryUrl);
    if (typeof mod.default !== "function") {
      throw new Error(`${functionName}/index.ts must "export default async function handler(input, ctx)"`);
    }
    handler = mod.default;
  } catch (err) {
    loadError = { ...describeError(err), status: 500, code: "function_error" };
    loadError.message = `could not load ${functionName}: ${outsideImport(loadError.message) ?? loadError.message}`;
  }
  writeFrame({ t: "ready", error: loadError });
}

globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  const reason = event.reason instanceof Error ? `${event.reason.name}: ${event.reason.message}` : String(event.reason);
  emitLog("error", `unhandled promise rejection: ${reason}`, {});
});
globalThis.addEventListener("error", (event) => {
  event.preventDefault();
  emitLog("error", `uncaught error: ${event.message}`, {});
});

const decoder = new TextDecoder();
let buffered = "";
for await (const chunk of Deno.stdin.readable) {
  buffered += decoder.decode(chunk, { stream: true });
  let newline: number;
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    if (line.trim()) onMessage(apply(parseJson, JSON, [line]));
  }
}
Deno.exit(0);
