"""A sink that hands spans to a background thread, so a request never waits on storage.

The thread batches what arrived, writes through the inner sink, and on failure
retries with backoff a few times before dropping the batch with a log line:
a span store outage is logged and retried, never propagated (DESIGN §7).

A write on the request path is a ``deque.append`` (atomic under the GIL) and, only
when the writer is asleep, one ``Event.set``: no lock is taken and no thread is
woken per record (a ``queue.Queue`` took two locks and a notify for each of the
three writes of every request). The writer clears its wake-up event before it
drains the deque, so a record appended during a drain is either taken by it or
sets the event again; none is left behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from functions.shared.spans import LogRecord, Span, SpanSink

_log = logging.getLogger("flux.spans")


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
        self._wake = threading.Event()   # set by the first record the writer has not seen yet
        self._items: deque[tuple[str, list]] = deque()
        self._writing = False            # the writer holds records taken from the deque
        self.max_pending = max_pending
        self._idle = threading.Condition()
        self._refused = 0                # dropped because the buffer was full (request threads)
        self._failed = 0                 # dropped by the writer (store refused or down)
        self._thread = threading.Thread(target=self._run, name="flux-span-writer", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self._refused + self._failed

    def write_spans(self, spans: Sequence[Span]) -> None:
        self._put(("spans", list(spans)))

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        self._put(("logs", list(logs)))

    def _put(self, item: tuple[str, list]) -> None:
        if not item[1]:
            return
        if len(self._items) >= self.max_pending:
            with self._idle:  # rare: a lock only to count the drop exactly
                self._refused += len(item[1])
            _log.warning("span buffer full; %d records dropped", len(item[1]))
            return
        self._items.append(item)
        if not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> None:
        self._hurry.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._idle:
            while (self._items or self._writing) and time.monotonic() < deadline:
                self._idle.wait(timeout=min(0.05, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self._stopping.set()
        self.flush()
        self._wake.set()
        self._thread.join(timeout=5)
        self.inner.close()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self.linger_s > 0 and not self._hurry.is_set() and len(self._items) < self.max_batch:
                self._hurry.wait(self.linger_s)
            self._wake.clear()
            while self._items:
                self._writing = True
                batch: list[object] = []
                while self._items and len(batch) < self.max_batch:
                    batch.append(self._items.popleft())
                self._write(batch)
            with self._idle:
                self._writing = False
                if not self._items and not self._stopping.is_set():
                    self._hurry.clear()
                self._idle.notify_all()
            if self._stopping.is_set() and not self._items:
                return

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
                self._failed += len(failed)
                _log.exception("span store refused %d records", len(failed))
                if spans:
                    spans = []
                    continue
                logs = []
                break
            except Exception:  # noqa: BLE001 - any store failure is retried, then dropped
                if attempt == self.retries:
                    self._failed += len(spans) + len(logs)
                    _log.exception("span store unavailable; dropped %d spans and %d logs", len(spans), len(logs))
                    break
                time.sleep(self.retry_base_s * (2 ** attempt))
                attempt += 1
