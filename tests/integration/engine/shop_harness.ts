// Runs one Flux handler with a ctx whose db calls go to the Python test over stdin/stdout
// (one JSON object per line), so example functions run against the real DataEngine.
// Usage: deno run --no-prompt --allow-read=<dir> shop_harness.ts <index.ts> '<input json>'

class FluxError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}
(globalThis as Record<string, unknown>).FluxError = FluxError;

const encoder = new TextEncoder();
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
let nextId = 0;

// Lines queued in one turn leave in one write, as the real runtime coalesces its frames: a
// Promise.all over a list then reaches Python as one chunk, not one line per scheduler slice.
let queued: string[] = [];

function flush(): void {
  const bytes = encoder.encode(queued.join(""));
  queued = [];
  let written = 0;
  while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
}

function send(message: unknown): void {
  if (queued.length === 0) queueMicrotask(flush);
  queued.push(JSON.stringify(message) + "\n");
}

function rpc(method: string, params: unknown): Promise<any> {
  const id = ++nextId;
  send({ id, method, params });
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

(async () => {
  let buffer = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const message = JSON.parse(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) waiter?.reject(new FluxError(message.error.status, message.error.code, message.error.message));
      else waiter?.resolve(message.result);
    }
  }
})();

const noop = () => {};
const ctx = {
  requestId: "harness", traceId: "harness",
  auth: { type: "none" },
  function: { name: "harness" },
  log: { debug: noop, info: noop, warn: noop, error: noop },
  // The queue is out of scope for the engine tests (tests/e2e/test_shop.py covers the real one).
  queue: { push: async (_name: string, _payload: unknown) => ({ job_id: "harness-job" }) },
  db: {
    query: async (q: unknown) => (await rpc("query", q)).rows,
    batch: async (qs: unknown[]) => (await rpc("batch", qs)).map((r: { rows: unknown[] }) => r.rows),
  },
};

const [entry, input] = Deno.args;
const module = await import(new URL(`file://${entry}`).href);
try {
  const result = await module.default(JSON.parse(input), ctx);
  // A Web Response (201 + Location from create_order): the tests here check its JSON body.
  send({ done: result instanceof Response ? await result.json() : result });
} catch (err) {
  const e = err as FluxError;
  send({ failed: { status: e.status ?? 500, code: e.code ?? "function_error", message: String(e.message) } });
}
flush();
Deno.exit(0);
