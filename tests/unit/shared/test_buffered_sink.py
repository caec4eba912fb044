"""BufferedSink: background writes, retries and drops (functions/observability/buffered.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

import pytest

from functions.observability.buffered import BufferedSink
from functions.shared.spans import LogRecord, MemorySink, Span, SpanSink

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def spans(n: int, start: int = 0) -> list[Span]:
    return [Span(TRACE, f"{i:016x}", None, "custom", f"s{i}", i) for i in range(start, start + n)]


def logs(n: int) -> list[LogRecord]:
    return [LogRecord(TRACE, None, i, "info", "fn", f"m{i}") for i in range(n)]


class FailingFirst(MemorySink):
    """Fails the first ``failures`` calls of the chosen write, then stores."""

    def __init__(self, failures: int, *, on: str = "spans") -> None:
        super().__init__()
        self.failures = failures
        self.on = on
        self.calls = 0
        self.closed = False

    def write_spans(self, spans: Sequence[Span]) -> None:
        if self.on == "spans":
            self._maybe_fail()
        super().write_spans(spans)

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        if self.on == "logs":
            self._maybe_fail()
        super().write_logs(logs)

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("store down")

    def close(self) -> None:
        self.closed = True


class Blocking(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write_spans(self, spans: Sequence[Span]) -> None:
        self.entered.set()
        assert self.release.wait(5)
        super().write_spans(spans)


@pytest.fixture
def sinks() -> Iterator[list[BufferedSink]]:
    made: list[BufferedSink] = []
    yield made
    for sink in made:
        sink.close()


def buffered(made: list[BufferedSink], inner: SpanSink, **kwargs: object) -> BufferedSink:
    sink = BufferedSink(inner, retry_base_s=0.001, **kwargs)  # type: ignore[arg-type]
    made.append(sink)
    return sink


def test_writes_arrive_after_flush(sinks: list[BufferedSink]) -> None:
    inner = MemorySink()
    sink = buffered(sinks, inner)
    sink.write_spans(spans(3))
    sink.write_logs(logs(2))
    sink.write_spans(spans(2, start=3))
    sink.flush()
    assert [s.name for s in inner.spans] == ["s0", "s1", "s2", "s3", "s4"]
    assert [r.message for r in inner.logs] == ["m0", "m1"]
    assert sink.dropped == 0


def test_many_small_writes_keep_order(sinks: list[BufferedSink]) -> None:
    inner = MemorySink()
    sink = buffered(sinks, inner, max_batch=7)
    for i in range(300):
        sink.write_spans(spans(1, start=i))
    sink.flush()
    assert [s.start_us for s in inner.spans] == list(range(300))


def test_empty_writes_are_ignored(sinks: list[BufferedSink]) -> None:
    inner = MemorySink()
    sink = buffered(sinks, inner)
    sink.write_spans([])
    sink.write_logs([])
    sink.flush(timeout=1)
    assert inner.spans == [] and inner.logs == []


def test_retries_until_the_store_recovers(sinks: list[BufferedSink]) -> None:
    inner = FailingFirst(2)
    sink = buffered(sinks, inner, retries=3)
    sink.write_spans(spans(4))
    sink.write_logs(logs(3))
    sink.flush()
    assert [s.name for s in inner.spans] == ["s0", "s1", "s2", "s3"]
    assert len(inner.logs) == 3
    assert inner.calls == 3
    assert sink.dropped == 0


def test_spans_are_not_rewritten_when_only_logs_fail(sinks: list[BufferedSink]) -> None:
    inner = FailingFirst(1, on="logs")
    sink = buffered(sinks, inner, retries=2)
    sink.write_spans(spans(2))
    sink.write_logs(logs(2))
    sink.flush()
    assert len(inner.spans) == 2
    assert len(inner.logs) == 2
    assert sink.dropped == 0


def test_always_failing_store_drops_and_counts(sinks: list[BufferedSink], caplog: pytest.LogCaptureFixture) -> None:
    inner = FailingFirst(10**9)
    sink = buffered(sinks, inner, retries=2)
    with caplog.at_level(logging.ERROR, logger="flux.spans"):
        sink.write_spans(spans(5))
        sink.write_logs(logs(3))
        sink.flush()
    assert inner.spans == [] and inner.logs == []
    assert sink.dropped == 8
    assert inner.calls == 3  # first try + 2 retries
    assert any("span store unavailable" in r.getMessage() for r in caplog.records)
    # the sink keeps working for later writes
    sink.write_spans(spans(1))
    sink.flush()
    assert sink.dropped == 9


def test_write_does_not_wait_for_a_slow_store_and_full_buffer_drops(sinks: list[BufferedSink]) -> None:
    inner = Blocking()
    sink = buffered(sinks, inner, max_pending=1)
    sink.write_spans(spans(1))  # taken by the writer thread, which then blocks in the store
    assert inner.entered.wait(5)
    sink.write_spans(spans(2, start=1))  # fills the one-slot queue
    sink.write_spans(spans(3, start=3))  # queue full: dropped, no blocking, no exception
    assert sink.dropped == 3
    inner.release.set()
    sink.flush()
    assert [s.start_us for s in inner.spans] == [0, 1, 2]


def test_flush_times_out_instead_of_hanging(sinks: list[BufferedSink]) -> None:
    inner = Blocking()
    sink = buffered(sinks, inner)
    sink.write_spans(spans(1))
    assert inner.entered.wait(5)
    sink.flush(timeout=0.05)
    assert inner.spans == []
    inner.release.set()
    sink.flush()
    assert len(inner.spans) == 1


def test_close_flushes_and_closes_inner() -> None:
    inner = FailingFirst(0)
    sink = BufferedSink(inner)
    sink.write_spans(spans(2))
    sink.close()
    assert len(inner.spans) == 2
    assert inner.closed is True


def test_records_written_from_many_threads_all_arrive_in_each_threads_order(sinks: list[BufferedSink]) -> None:
    """The request path appends to a deque without a lock: nothing may be lost or reordered per writer,
    also while the writer thread is draining (a short linger makes it drain often)."""
    inner = MemorySink()
    sink = buffered(sinks, inner, linger_s=0.001, max_batch=50)

    def write(offset: int) -> None:
        for i in range(2000):
            sink.write_spans(spans(1, start=offset + i))

    threads = [threading.Thread(target=write, args=(n * 10_000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.flush()
    seen = [s.start_us for s in inner.spans]
    assert len(seen) == 8000 and sink.dropped == 0
    for n in range(4):
        mine = [x for x in seen if n * 10_000 <= x < (n + 1) * 10_000]
        assert mine == list(range(n * 10_000, n * 10_000 + 2000))
