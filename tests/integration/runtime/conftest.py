"""A project with one function per runtime behaviour, served by a real Runtime in one event loop."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.local.stack import LocalStack
from functions.shared.spans import MemorySink

FUNCTIONS: dict[str, tuple[dict, str]] = {
    "hello": ({"route": "/hello"}, """
        export default async function handler(input, ctx) {
          ctx.log.info("hello called", { name: input.name });
          console.log("console line", { n: 1 });
          return { hello: input.name ?? "world", requestId: ctx.requestId, traceId: ctx.traceId,
                   fn: ctx.function.name, auth: ctx.auth };
        }"""),
    "boom": ({}, """
        export default async function handler(input, ctx) {
          const x = 1;
          throw new Error("kaboom " + x);
        }"""),
    "teapot": ({}, """
        export default async function handler() { throw new FluxError(418, "teapot", "short and stout"); }"""),
    "loop": ({"timeout_ms": 700}, """
        export default async function handler(input) {
          if (input.quick) return { ok: true };
          while (true) {}
        }"""),
    "crash": ({}, """
        export default async function handler(input) {
          if (input.quick) return { ok: true };
          Deno.exit(1);
        }"""),
    "reads_env": ({}, """
        export default async function handler() { return { home: Deno.env.get("HOME") }; }"""),
    "writes_file": ({}, """
        export default async function handler(input) {
          Deno.writeTextFileSync(input.path, "pwned");
          return { wrote: true };
        }"""),
    "fetches": ({}, """
        export default async function handler(input) {
          const r = await fetch(input.url);
          return { status: r.status };
        }"""),
    "noisy": ({}, """
        export default async function handler() {
          await Deno.stdout.write(new TextEncoder().encode("raw bytes without newline"));
          console.log('\\x1eFLUX:fake {"t":"done","id":1,"ok":true,"value":"forged"}');
          await Deno.stdout.write(new TextEncoder().encode('\\x1eFLUX:0000 {"t":"done"}\\n'));
          return { genuine: true };
        }"""),
    "uses_secret": ({"secrets": ["API_TOKEN", "MISSING_ONE"]}, """
        export default async function handler(input, ctx) {
          const token = await ctx.secrets.get("API_TOKEN");
          const other = await ctx.secrets.get("MISSING_ONE", "fallback-value");
          ctx.log.info(`token is ${token}`, { token });
          return { length: token.length, other };
        }"""),
    "missing_secret": ({"secrets": ["NOPE_NOT_SET"]}, """
        export default async function handler(input, ctx) { return await ctx.secrets.get("NOPE_NOT_SET"); }"""),
    "caller": ({"invokes": ["hello"]}, """
        export default async function handler(input, ctx) {
          const inner = await ctx.span("prepare", async () => {
            ctx.log.debug("inside span");
            return await ctx.function.invoke("hello", { name: "from caller" });
          }, { step: 1 });
          return { inner };
        }"""),
    "hog": ({"memory_mb": 64}, """
        export default async function handler(input) {
          if (input.quick) return { ok: true };
          const keep = [];
          while (true) keep.push(new Array(1e6).fill(Math.random()));
        }"""),
    "bad_return": ({}, """
        export default async function handler() { return { n: 10n }; }"""),
    "no_default": ({}, """export const handler = () => 1;"""),
    "validated": ({"input_schema": {"type": "object", "required": ["qty"],
                                     "properties": {"qty": {"type": "integer", "minimum": 1}}}}, """
        export default async function handler(input) { return input; }"""),
    "get_item": ({"route": "/items/{id}", "method": "GET"}, """
        export default async function handler(input) { return input; }"""),
}


def write_project(root: Path, project: dict | None = None,
                  functions: dict[str, tuple[dict, str]] | None = None) -> Path:
    """A project folder: ``flux.json`` and one folder per function (``name -> (flux.json, index.ts)``)."""
    (root / "flux.json").write_text(json.dumps(project or {"name": "rt", "limits": {"max_body_bytes": 2048}}))
    for name, (config, source) in (FUNCTIONS if functions is None else functions).items():
        folder = root / "functions" / name
        folder.mkdir(parents=True)
        (folder / "index.ts").write_text(source)
        (folder / "flux.json").write_text(json.dumps(config))
    return root


class Harness:
    """A LocalStack whose spans go to memory, driven from one event loop."""

    def __init__(self, root: Path, secrets: dict[str, str] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack = LocalStack(root, min_warm=1, max_workers=2, use_database=False)
        self.memory = MemorySink()
        self.stack.sink = self.memory
        self.stack.pipeline.sink = self.memory
        for name, value in (secrets or {}).items():  # before start: the workers read them from the first request
            self.stack.secrets.set(name, value)
        self.run(self.stack.start())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.stack.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = write_project(tmp_path_factory.mktemp("rt"))
    h = Harness(root)
    h.stack.secrets.set("API_TOKEN", "s3cr3t-token-value")
    yield h
    h.close()


@pytest.fixture(scope="module")
def loopback_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"private data")

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
