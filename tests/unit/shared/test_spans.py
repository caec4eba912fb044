"""Span and log models, the sink port, SafeSink and redaction (functions/shared/spans.py)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

import pytest

from functions.shared.spans import (
    LogRecord,
    MemorySink,
    NullSink,
    SafeSink,
    Span,
    SpanSink,
    now_us,
    redact,
    start_span,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_open_span_finish_has_non_negative_duration_and_merged_attrs() -> None:
    before = now_us()
    open_span = start_span(TRACE, "00f067aa0ba902b7", "db", "select orders", table="orders", rows=0)
    time.sleep(0.002)
    span = open_span.finish("error", rows=3, cache="MISS")
    assert re.fullmatch(r"[0-9a-f]{16}", span.span_id)
    assert span.span_id == open_span.span_id
    assert (span.trace_id, span.parent_span_id, span.kind, span.name) == (TRACE, "00f067aa0ba902b7", "db",
                                                                          "select orders")
    assert span.status == "error"
    assert span.duration_us >= 2_000
    assert before <= span.start_us <= now_us()
    assert span.attrs == {"table": "orders", "rows": 3, "cache": "MISS"}
    assert open_span.attrs == {"table": "orders", "rows": 0}


def test_finish_defaults_to_ok() -> None:
    span = start_span(TRACE, None, "custom", "x").finish()
    assert span.status == "ok"
    assert span.duration_us >= 0
    assert span.parent_span_id is None
    assert span.attrs == {}


def test_start_span_ids_are_unique() -> None:
    assert len({start_span(TRACE, None, "custom", "x").span_id for _ in range(100)}) == 100


def test_span_round_trip() -> None:
    span = Span(TRACE, "a" * 16, "b" * 16, "gateway", "POST /orders", 1_700_000_000_000_000, 1234, "error",
                {"http.status": 500, "nested": {"a": [1, 2]}})
    data = span.to_dict()
    assert data == {"trace_id": TRACE, "span_id": "a" * 16, "parent_span_id": "b" * 16, "kind": "gateway",
                    "name": "POST /orders", "start_us": 1_700_000_000_000_000, "duration_us": 1234,
                    "status": "error", "attrs": {"http.status": 500, "nested": {"a": [1, 2]}}}
    assert Span.from_dict(data) == span


def test_span_from_dict_defaults_and_coercion() -> None:
    span = Span.from_dict({"trace_id": TRACE, "span_id": "s", "parent_span_id": "", "kind": "db", "name": "n",
                           "start_us": "12"})
    assert span.parent_span_id is None
    assert (span.start_us, span.duration_us, span.status, span.attrs) == (12, 0, "ok", {})


def test_log_record_round_trip_and_defaults() -> None:
    record = LogRecord(TRACE, "s" * 16, 5, "warn", "create_order", "hi", {"orderId": 1})
    assert LogRecord.from_dict(record.to_dict()) == record
    minimal = LogRecord.from_dict({"trace_id": TRACE, "ts_us": 7})
    assert (minimal.span_id, minimal.level, minimal.function, minimal.message, minimal.fields) == (
        None, "info", "", "", {})


def test_memory_and_null_sinks() -> None:
    span = start_span(TRACE, None, "custom", "x").finish()
    log = LogRecord(TRACE, None, 1, "info", "f", "m")
    memory = MemorySink()
    memory.write_spans([span])
    memory.write_logs([log])
    memory.flush()
    memory.close()
    assert memory.spans == [span] and memory.logs == [log]
    NullSink().write_spans([span])  # accepted and dropped, no error


class _Broken(SpanSink):
    def write_spans(self, spans: Sequence[Span]) -> None:
        raise ConnectionError("store down")

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        raise RuntimeError("store down")

    def flush(self) -> None:
        raise OSError("flush down")

    def close(self) -> None:
        raise OSError("close down")


def test_safe_sink_swallows_and_logs_failures(caplog: pytest.LogCaptureFixture) -> None:
    sink = SafeSink(_Broken())
    span = start_span(TRACE, None, "custom", "x").finish()
    with caplog.at_level(logging.ERROR, logger="flux.spans"):
        sink.write_spans([span, span])
        sink.write_logs([LogRecord(TRACE, None, 1, "info", "f", "m")])
        sink.flush()
        sink.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "flux.spans"]
    assert "span store failed; 2 spans dropped" in messages
    assert "span store failed; 1 log records dropped" in messages
    assert "span store flush failed" in messages
    assert "span store close failed" in messages
    assert all(r.exc_info for r in caplog.records if r.name == "flux.spans")


def test_safe_sink_passes_through_when_healthy() -> None:
    inner = MemorySink()
    sink = SafeSink(inner)
    span = start_span(TRACE, None, "custom", "x").finish()
    sink.write_spans([span])
    sink.write_logs([LogRecord(TRACE, None, 1, "info", "f", "m")])
    assert inner.spans == [span] and len(inner.logs) == 1


def test_redact_replaces_secret_values_in_nested_structures() -> None:
    value = {
        "authorization": "Bearer sk_live_abcdef",
        "list": ["x", "token=hunter22 and hunter22 again", {"deep": ["hunter22"]}],
        "number": 42,
        "none": None,
        "flag": True,
    }
    result = redact(value, ["hunter22", "sk_live_abcdef"])
    assert result == {
        "authorization": "Bearer [redacted]",
        "list": ["x", "token=[redacted] and [redacted] again", {"deep": ["[redacted]"]}],
        "number": 42,
        "none": None,
        "flag": True,
    }
    assert value["list"][1] == "token=hunter22 and hunter22 again"  # input not mutated


def test_redact_leaves_short_and_empty_secrets_alone() -> None:
    value = {"a": "abc is short", "b": "", "c": "pin 123"}
    assert redact(value, ["abc", "", "123"]) == value
    assert redact("abcd", ["abcd", "ab"]) == "[redacted]"


def test_redact_with_no_secrets_returns_the_value() -> None:
    value = {"a": "b"}
    assert redact(value, []) is value
    assert redact(value, iter(["zzzzzz"])) == value


def test_redact_overlapping_secrets_leave_no_fragment() -> None:
    assert redact("tok=sk_live_123456789", ["sk_live_123", "sk_live_123456789"]) == "tok=[redacted]"


def test_redact_tuples() -> None:
    result = redact({"args": ("id", "hunter22")}, ["hunter22"])
    assert "hunter22" not in repr(result)
    assert "[redacted]" in repr(result)


def test_start_span_backdates_to_issue_time_within_bounds():
    from functions.shared.spans import now_us, start_span

    now = now_us()
    span = start_span("t" * 32, None, "db", "q", issued_us=now - 2_000)
    assert now - 2_500 <= span.start_us <= now - 1_500
    assert span.finish().duration_us >= 1_500
    future = start_span("t" * 32, None, "db", "q", issued_us=now + 10_000_000)
    assert future.start_us >= now
    ancient = start_span("t" * 32, None, "db", "q", issued_us=now - 60_000_000)
    assert ancient.start_us >= now
