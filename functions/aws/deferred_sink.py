"""A span sink that only collects during a request and writes when flushed, on the flushing thread.

Used by a runtime Lambda whose spans are written by the internal extension
(:mod:`functions.aws.extension`) after the response: nothing may touch DynamoDB
while the request runs (a background writer would compete with the request for
the GIL), and the write must be finished when :meth:`flush` returns, because the
extension calls Next right after and the environment may be frozen then. A store
failure is logged with the number of records dropped and never raised (DESIGN §7);
the store itself retries throttling and partial batches until its deadline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from functions.shared.spans import LogRecord, Span, SpanSink

_log = logging.getLogger("flux.spans")


class DeferredSink(SpanSink):
    def __init__(self, inner: SpanSink) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self._logs: list[LogRecord] = []
        self.dropped = 0

    def write_spans(self, spans: Sequence[Span]) -> None:
        with self._lock:
            self._spans.extend(spans)

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        with self._lock:
            self._logs.extend(logs)

    @property
    def pending(self) -> int:
        return len(self._spans) + len(self._logs)

    def flush(self) -> None:
        """Write everything collected so far; spans and logs separately, so one failing spares the other."""
        with self._lock:
            spans, self._spans = self._spans, []
            logs, self._logs = self._logs, []
        if spans:
            self._write("spans", lambda: self.inner.write_spans(spans), len(spans))
        if logs:
            self._write("log records", lambda: self.inner.write_logs(logs), len(logs))

    def _write(self, kind: str, write: Callable[[], None], count: int) -> None:
        try:
            write()
        except Exception:  # noqa: BLE001 - tracing must never fail a request
            self.dropped += count
            _log.exception("span store failed; %d %s dropped", count, kind)

    def close(self) -> None:
        self.flush()
        self.inner.close()
