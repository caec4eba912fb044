"""What a layer needs to know about the call it serves: the trace, the parent span and the sink.

The runtime builds a :class:`CallContext` for each RPC a Deno worker makes
(``ctx.db.query``, ``ctx.queue.push`` ...) so the engine and the queue can
record their spans as children of the span that was current in user code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from functions.shared.spans import NullSink, SpanSink


@dataclass(frozen=True, slots=True)
class CallContext:
    trace_id: str
    parent_span_id: str | None
    function: str = ""
    request_id: str = ""
    sink: SpanSink = field(default_factory=NullSink)
    auth: dict[str, Any] = field(default_factory=dict)
    # When user code issued the call (wall clock, µs), if known: spans start there, so waiting for a
    # pool connection shows, and calls issued together (Promise.all) overlap as they did in user code.
    issued_us: int | None = None
    # The HTTP request as ctx.request shows it (functions/gateway/pipeline.py builds it); None for queued
    # jobs and nested ctx.function.invoke calls, which have no client request of their own.
    request: dict[str, Any] | None = None

    def child(self, parent_span_id: str | None, *, issued_us: int | None = None) -> CallContext:
        # Built directly: dataclasses.replace on a frozen dataclass costs ~8 µs, and this runs per ctx call.
        return CallContext(self.trace_id, parent_span_id, self.function, self.request_id, self.sink, self.auth,
                           issued_us, self.request)
