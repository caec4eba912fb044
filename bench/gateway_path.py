"""CPU per request of the local gateway's own Python: ASGI request in, response out, Deno replaced by a stub.

    .venv/bin/python -m bench.gateway_path [--requests 20000] [--sink null|sqlite]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python -m bench.gateway_path --requests N

``bench.run`` measures the whole server; this isolates what Flux itself does per request in the
gateway process (routing, the API Gateway event, the authorizer and its verdict, the pipeline,
the gateway and function spans, the response) on the bench app's ``GET /hello``, with an invoker
that answers at once and writes a function span as the runtime does. No HTTP server, no Deno,
no sockets: what is left is Python work, so it is also the figure to count instructions of.

Two figures are printed: the event-loop thread's CPU per request, and the whole process's
(which adds the span writer thread when ``--sink sqlite``). Under callgrind (instructions do not
depend on what else the machine runs), run it twice with different ``--requests`` and divide the
difference of the two totals by the difference of the counts (bench/PROFILE.md section 6).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from functions.gateway.local import build_local_authorizer
from functions.gateway.pipeline import HttpPipeline
from functions.local.gateway import LocalGateway
from functions.observability.buffered import BufferedSink
from functions.observability.sqlite_store import SqliteSpanStore
from functions.runtime.local_secrets import SqliteSecretsStore
from functions.shared.context import CallContext
from functions.shared.manifest import load_project
from functions.shared.spans import NullSink, SafeSink, SpanSink, start_span

APP = Path(__file__).resolve().parent / "apps" / "flux"
SCOPE: dict[str, Any] = {
    "type": "http", "http_version": "1.1", "method": "GET", "path": "/hello", "raw_path": b"/hello",
    "query_string": b"", "headers": [(b"host", b"127.0.0.1:4000"), (b"user-agent", b"wrk")],
    "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 4000), "scheme": "http"}


class StubInvoker:
    """Answers at once, writing the function span the runtime would write."""

    async def invoke(self, function: str, payload: Any, call: CallContext, *,
                     span_attrs: dict[str, Any] | None = None) -> Any:
        span = start_span(call.trace_id, call.parent_span_id, "function", function, function=function)
        call.sink.write_spans([span.finish("ok", cold=False)])
        return {"message": "hello, world"}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def measure(requests: int, sink_kind: str, warmup: int = 500) -> tuple[float, float]:
    """(loop thread CPU µs per request, process CPU µs per request)."""
    state = Path(tempfile.mkdtemp(prefix="flux-bench-gateway-"))
    project = load_project(APP)
    buffer = BufferedSink(SqliteSpanStore(state / "traces.db")) if sink_kind == "sqlite" else None
    sink: SpanSink = SafeSink(buffer) if buffer is not None else NullSink()
    pipeline = HttpPipeline(project, StubInvoker(), sink=sink, on_complete=lambda _info: None)
    authorize = build_local_authorizer(project, secrets=SqliteSecretsStore(state / "secrets.db")).authorize
    gateway = LocalGateway(project, pipeline, authorize=authorize)
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(warmup):
        await gateway(dict(SCOPE), _receive, send)
    if buffer is not None:
        buffer.flush()
    thread0, process0 = time.thread_time(), time.process_time()
    for _ in range(requests):
        await gateway(dict(SCOPE), _receive, send)
    thread1 = time.thread_time()
    if buffer is not None:
        buffer.flush()
    process1 = time.process_time()
    if buffer is not None:
        buffer.close()
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses: {sorted(set(statuses))}")
    return (thread1 - thread0) / requests * 1e6, (process1 - process0) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_path", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--sink", choices=("null", "sqlite"), default="null")
    args = parser.parse_args(argv)
    loop_us, process_us = asyncio.run(measure(args.requests, args.sink))
    print(f"sink={args.sink}: {loop_us:.1f} CPU µs/request on the loop thread, {process_us:.1f} in the process "
          f"({args.requests} requests)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
