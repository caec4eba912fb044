"""One contract, two adapters: SQLite (local) and DynamoDB (moto) must answer the same reads."""

from __future__ import annotations

from functions.observability.store import SpanStore
from functions.shared.spans import LogRecord, Span

T0 = 1_700_000_000_000_000


def _trace(trace_id: str, start: int, *, function: str = "create_order", status: str = "ok",
           http_status: int = 200) -> list[Span]:
    root = Span(trace_id, f"{trace_id[:12]}0001", None, "gateway", "POST /orders", start, 9_000, status,
                {"function": function, "http.method": "POST", "http.route": "/orders", "http.status": http_status})
    fn = Span(trace_id, f"{trace_id[:12]}0002", root.span_id, "function", function, start + 500, 8_000, status,
              {"function": function, "cold": False})
    db = Span(trace_id, f"{trace_id[:12]}0003", fn.span_id, "db", "insert orders", start + 900, 1_200, "ok",
              {"function": function, "table": "orders", "operation": "insert", "rows": 1, "cache": "BYPASS",
               "sql_shape": "INSERT INTO orders (user_id) VALUES ($1)", "filter_columns": [], "ratio": 0.25,
               "nested": {"a": [1, 2, {"b": None}]}})
    return [db, root, fn]


def test_get_trace_returns_every_span_ordered_by_start(store: SpanStore) -> None:
    spans = _trace("a" * 32, T0)
    store.write_spans(spans)
    got = store.get_trace("a" * 32)
    assert [s.kind for s in got] == ["gateway", "function", "db"]
    assert got[2].attrs["nested"] == {"a": [1, 2, {"b": None}]}
    assert got[2].attrs["ratio"] == 0.25
    assert got[0].parent_span_id is None and got[1].parent_span_id == got[0].span_id
    assert got[0].to_dict() == spans[1].to_dict()


def test_unknown_trace_is_empty(store: SpanStore) -> None:
    assert store.get_trace("f" * 32) == []


def test_rewriting_a_span_is_idempotent(store: SpanStore) -> None:
    spans = _trace("b" * 32, T0)
    store.write_spans(spans)
    store.write_spans(spans)
    store.write_spans(spans + spans)
    assert len(store.get_trace("b" * 32)) == 3


def test_list_traces_lists_roots_newest_first_with_filters(store: SpanStore) -> None:
    for n in range(12):
        status = "error" if n % 3 == 0 else "ok"
        store.write_spans(_trace(f"{n:02d}" * 16, T0 + n * 1_000_000, function="a" if n % 2 else "b",
                                 status=status, http_status=500 if status == "error" else 200))
    listed = store.list_traces(limit=50)
    assert [t.trace_id for t in listed] == [f"{n:02d}" * 16 for n in reversed(range(12))]
    assert all(t.kind == "gateway" for t in listed)
    assert listed[0].method == "POST" and listed[0].route == "/orders" and listed[0].http_status == 200
    assert [t.trace_id for t in store.list_traces(limit=3)] == [f"{n:02d}" * 16 for n in (11, 10, 9)]
    assert {t.function for t in store.list_traces(function="a")} == {"a"}
    assert len(store.list_traces(function="a")) == 6
    errors = store.list_traces(status="error")
    assert [t.trace_id for t in errors] == [f"{n:02d}" * 16 for n in (9, 6, 3, 0)]
    recent = store.list_traces(since_us=T0 + 9 * 1_000_000)
    assert [t.trace_id for t in recent] == [f"{n:02d}" * 16 for n in (11, 10, 9)]
    both = store.list_traces(function="b", status="error", since_us=T0 + 1)
    assert [t.trace_id for t in both] == ["06" * 16]
    assert store.list_traces(function="nobody") == []


def test_list_traces_limit_holds_across_many_traces(store: SpanStore) -> None:
    spans = []
    for n in range(60):
        spans.extend(_trace(f"{n:032x}", T0 + n * 10))
    store.write_spans(spans)
    listed = store.list_traces(limit=40)
    assert len(listed) == 40
    assert listed[0].trace_id == f"{59:032x}" and listed[-1].trace_id == f"{20:032x}"


def _log(trace_id: str, ts: int, level: str, function: str, message: str) -> LogRecord:
    return LogRecord(trace_id, "s1", ts, level, function, message, {"n": ts - T0})


def test_logs_filters_and_order(store: SpanStore) -> None:
    t1, t2 = "1" * 32, "2" * 32
    store.write_logs([
        _log(t1, T0 + 1, "debug", "create_order", "start"),
        _log(t1, T0 + 2, "info", "create_order", "order created"),
        _log(t2, T0 + 3, "warn", "send_invoice", "slow smtp"),
        _log(t2, T0 + 4, "error", "send_invoice", "smtp failed"),
        _log(t1, T0 + 5, "info", "create_order", "done"),
    ])
    assert [r.message for r in store.list_logs()] == ["start", "order created", "slow smtp", "smtp failed", "done"]
    assert [r.message for r in store.list_logs(limit=2)] == ["smtp failed", "done"]
    assert [r.message for r in store.list_logs(level="warn")] == ["slow smtp", "smtp failed"]
    assert [r.message for r in store.list_logs(function="send_invoice", level="error")] == ["smtp failed"]
    assert [r.message for r in store.list_logs(request_id=t1)] == ["start", "order created", "done"]
    assert [r.message for r in store.list_logs(request_id=t1, limit=1)] == ["done"]
    assert [r.message for r in store.list_logs(since_us=T0 + 4)] == ["smtp failed", "done"]
    assert [r.message for r in store.list_logs(request_id=t1, since_us=T0 + 2)] == ["order created", "done"]
    record = store.list_logs(request_id=t2, level="error")[0]
    assert record.to_dict() == _log(t2, T0 + 4, "error", "send_invoice", "smtp failed").to_dict()
