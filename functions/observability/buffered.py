"""A sink that hands spans to a background thread, so a request never waits on storage.

The thread batches what arrived, writes through the inner sink, and on failure
retries with backoff a few times before dropping the batch with a log line:
a span store outage is logged and retried, never propagated (DESIGN §7).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from functions.shared.spans import LogRecord, Span, SpanSink

_log = logging.getLogger("flux.spans")
_STOP = object()


class BufferedSink(SpanSink):
    def __init__(self, inner: SpanSink, *, max_batch: int = 500, retries: int = 3, retry_base_s: float = 0.05,
                 max_pending: int = 100_000, linger_s: float = 0.05) -> None:
        """``linger_s``: after the first record arrives, wait this long for more before writing, so a busy
        server commits one transaction per batch rather than one per span (and wakes this thread less)."""
        self.inner = inner
        self.max_batch = max_batch
        self.retries = retries
        self.retry_base_s = retry_base_s
        self.linger_s = linger_s
        self._stopping = threading.Event()
        self._hurry = threading.Event()  # set by flush() and close(): stop lingering, write now
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._idle = threading.Condition()
        self._pending = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="flux-span-writer", daemon=True)
        self._thread.start()

    def write_spans(self, spans: Sequence[Span]) -> None:
        self._put(("spans", list(spans)))

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        self._put(("logs", list(logs)))

    def _put(self, item: tuple[str, list]) -> None:
        if not item[1]:
            return
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self.dropped += len(item[1])
            _log.warning("span buffer full; %d records dropped", len(item[1]))

    def flush(self, timeout: float = 10.0) -> None:
        self._hurry.set()
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending and time.monotonic() < deadline:
                self._idle.wait(timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self._stopping.set()
        self._hurry.set()
        self.flush()
        self._queue.put(_STOP)
        self._thread.join(timeout=5)
        self.inner.close()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            if self.linger_s > 0 and not self._hurry.is_set() and self._queue.qsize() < self.max_batch:
                self._hurry.wait(self.linger_s)
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._write(batch)
                    return
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[object]) -> None:
        spans: list[Span] = []
        logs: list[LogRecord] = []
        for kind, records in batch:  # type: ignore[misc]
            (spans if kind == "spans" else logs).extend(records)
        attempt = 0
        while attempt <= self.retries:
            try:
                if spans:
                    self.inner.write_spans(spans)
                    spans = []
                if logs:
                    self.inner.write_logs(logs)
                    logs = []
                break
            except ValueError:
                # The store refused the records themselves (it already kept every other record of the batch):
                # retrying cannot help. Drop the kind that failed and go on with the other.
                failed = spans if spans else logs
                self.dropped += len(failed)
                _log.exception("span store refused %d records", len(failed))
                if spans:
                    spans = []
                    continue
                logs = []
                break
            except Exception:  # noqa: BLE001 - any store failure is retried, then dropped
                if attempt == self.retries:
                    self.dropped += len(spans) + len(logs)
                    _log.exception("span store unavailable; dropped %d spans and %d logs", len(spans), len(logs))
                    break
                time.sleep(self.retry_base_s * (2 ** attempt))
                attempt += 1
        with self._idle:
            self._pending -= len(batch)
            if self._pending == 0 and not self._stopping.is_set():
                self._hurry.clear()
            self._idle.notify_all()
