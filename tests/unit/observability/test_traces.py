"""Trace assembly: tree, async branch, orphans, cycles, critical path, status, findings."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from functions.observability.traces import Detectors, TraceAssembler, choose_root, critical_path, trace_status
from functions.shared.manifest import Observability
from functions.shared.spans import LogRecord, Span

T = "a" * 32
T0 = 1_700_000_000_000_000


def span(sid: str, parent: str | None, kind: str, name: str, start_ms: float, dur_ms: float,
         status: str = "ok", **attrs: object) -> Span:
    return Span(T, sid, parent, kind, name, T0 + int(start_ms * 1000), int(dur_ms * 1000), status, dict(attrs))


class RecordingDetectors:
    """Fakes shaped like the engine's detectors; they record the thresholds they were given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def n_plus_one(self, spans: Sequence[Span], threshold: int) -> list[dict]:
        self.calls.append(("n1", len(spans), threshold))
        ids = [s.span_id for s in spans if s.name == "select products"]
        if len(ids) < threshold:
            return []
        return [{"table": "products", "count": len(ids), "sql_shape": "SELECT ... WHERE id = $1",
                 "parent_span_id": "fn", "span_ids": ids, "concurrent": True, "message": "N+1", "suggestion": "in"}]

    def slow(self, spans: Sequence[Span], slow_ms: int) -> list[dict]:
        self.calls.append(("slow", len(spans), slow_ms))
        return [{"span_id": s.span_id, "table": s.attrs.get("table"), "operation": "select",
                 "duration_ms": s.duration_us / 1000, "sql_shape": "x", "message": "slow"}
                for s in spans if s.kind == "db" and s.duration_us >= slow_ms * 1000]

    def detectors(self) -> Detectors:
        return Detectors(self.n_plus_one, self.slow)


def request_trace() -> list[Span]:
    spans = [
        span("gw", None, "gateway", "POST /orders", 0, 220, **{"function": "create_order", "http.status": 200}),
        span("fn", "gw", "function", "create_order", 1, 215, function="create_order"),
        span("u", "fn", "db", "select users", 2, 2, table="users"),
        span("slowq", "fn", "db", "select order_items", 30, 150, table="order_items"),
        span("enq", "fn", "queue", "enqueue send_invoice", 200, 2, **{"queue.function": "send_invoice"}),
        span("att", "enq", "queue", "async → send_invoice", 260, 80, attempt=1, queue_wait_ms=58, outcome="ok"),
        span("fn2", "att", "function", "send_invoice", 262, 75, function="send_invoice"),
        span("upd", "fn2", "db", "update orders", 270, 3, table="orders"),
    ]
    spans += [span(f"p{i}", "fn", "db", "select products", 5 + i * 0.1, 20, table="products") for i in range(6)]
    return spans


def assemble(spans: list[Span], settings: Observability | None = None, **kwargs: object) -> dict:
    fake = RecordingDetectors()
    assembler = TraceAssembler(settings or Observability(), detectors=fake.detectors(), **kwargs)
    return assembler.assemble(list(reversed(spans)))


def test_tree_nests_spans_and_sorts_children_by_start() -> None:
    trace = assemble(request_trace())
    root = trace["root"]
    assert root["span_id"] == "gw" and root["depth"] == 0
    fn = root["children"][0]
    assert fn["span_id"] == "fn" and fn["depth"] == 1
    assert [c["span_id"] for c in fn["children"]] == ["u", "p0", "p1", "p2", "p3", "p4", "p5", "slowq", "enq"]
    assert [s["span_id"] for s in trace["spans"]][:4] == ["gw", "fn", "u", "p0"]
    assert trace["span_count"] == 14 and len(trace["spans"]) == 14
    assert trace["spans"][2]["offset_us"] == 2000
    assert "children" not in trace["spans"][0]


def test_async_branch_hangs_under_the_enqueue_span() -> None:
    trace = assemble(request_trace())
    enq = trace["root"]["children"][0]["children"][-1]
    attempt = enq["children"][0]
    assert attempt["name"] == "async → send_invoice" and attempt["async"] is True
    assert attempt["children"][0]["span_id"] == "fn2" and attempt["children"][0]["async"] is True
    assert attempt["children"][0]["children"][0]["async"] is True
    assert enq["async"] is False
    by_id = {s["span_id"]: s for s in trace["spans"]}
    assert by_id["upd"]["depth"] == 5


def test_duration_spans_the_async_branch_and_status_is_ok() -> None:
    trace = assemble(request_trace())
    assert trace["duration_ms"] == 340.0
    assert trace["status"] == "ok" and trace["http_status"] == 200
    assert trace["function"] == "create_order" and trace["name"] == "POST /orders"


def test_orphans_are_attached_to_the_root_and_marked() -> None:
    spans = request_trace()
    spans = [s for s in spans if s.span_id != "att"]  # the attempt span is not written yet
    trace = assemble(spans)
    top = [c["span_id"] for c in trace["root"]["children"]]
    assert top == ["fn", "fn2"]
    by_id = {s["span_id"]: s for s in trace["spans"]}
    assert by_id["fn2"]["orphan"] is True and by_id["upd"]["orphan"] is False
    assert by_id["fn"]["orphan"] is False and by_id["gw"]["orphan"] is False


def test_root_without_gateway_and_upstream_parent() -> None:
    spans = [span("fn", "upstream00000000", "function", "job", 0, 10), span("d", "fn", "db", "select x", 1, 1)]
    trace = assemble(spans)
    assert trace["root"]["span_id"] == "fn" and trace["root"]["orphan"] is False
    assert choose_root([span("a", None, "custom", "x", 5, 1), span("g", None, "gateway", "GET /", 6, 1)]).span_id == "g"


def test_parent_cycles_do_not_hang_and_nothing_is_lost() -> None:
    spans = [span("gw", None, "gateway", "GET /", 0, 10), span("a", "b", "custom", "a", 1, 1),
             span("b", "a", "custom", "b", 2, 1), span("c", "c", "custom", "self", 3, 1)]
    trace = assemble(spans)
    assert sorted(s["span_id"] for s in trace["spans"]) == ["a", "b", "c", "gw"]
    top = trace["root"]["children"]
    assert [c["span_id"] for c in top] == ["a", "c"] and top[0]["children"][0]["span_id"] == "b"
    assert top[0]["orphan"] and top[1]["orphan"]


def test_critical_path_follows_the_last_finishing_work_and_skips_the_async_branch() -> None:
    trace = assemble(request_trace())
    # p0..p4 overlap p5 (concurrent), so only the last to finish delays the function; u ran before them.
    assert trace["critical_path"] == ["gw", "fn", "u", "p5", "slowq", "enq"]
    by_id = {s["span_id"]: s for s in trace["spans"]}
    assert by_id["slowq"]["critical"] and not by_id["p4"]["critical"] and not by_id["att"]["critical"]


def test_critical_path_of_sequential_children() -> None:
    spans = [span("r", None, "gateway", "GET /", 0, 100), span("a", "r", "db", "a", 0, 30),
             span("b", "r", "db", "b", 30, 30), span("c", "r", "db", "c", 60, 30), span("a1", "a", "custom", "x", 5, 20)]
    root = spans[0]
    children = {"r": spans[1:4], "a": [spans[4]]}
    assert critical_path(root, children) == ["r", "a", "a1", "b", "c"]


@pytest.mark.parametrize(("kind", "status", "http_status", "expected"), [
    ("gateway", "ok", 200, "ok"), ("gateway", "ok", 503, "error"), ("gateway", "error", 200, "error"),
    ("function", "error", None, "error"), ("db", "error", None, "ok"), ("gateway", "ok", 404, "ok"),
    ("gateway", "ok", "bogus", "ok"),
])
def test_status(kind: str, status: str, http_status: object, expected: str) -> None:
    attrs = {} if http_status is None else {"http.status": http_status}
    assert trace_status([span("x", None, kind, "n", 0, 1, status, **attrs)]) == expected


def test_findings_mark_spans_and_use_the_project_thresholds() -> None:
    fake = RecordingDetectors()
    settings = Observability(slow_query_ms=120, n_plus_one_threshold=6)
    trace = TraceAssembler(settings, detectors=fake.detectors()).assemble(request_trace())
    assert ("n1", 14, 6) in fake.calls and ("slow", 14, 120) in fake.calls
    assert trace["n1_warnings"][0]["count"] == 6
    assert [q["span_id"] for q in trace["slow_queries"]] == ["slowq"]
    by_id = {s["span_id"]: s for s in trace["spans"]}
    assert by_id["p3"]["n_plus_one"] and not by_id["u"]["n_plus_one"]
    assert by_id["slowq"]["slow"] and not by_id["p3"]["slow"]
    higher = TraceAssembler(Observability(n_plus_one_threshold=7), detectors=fake.detectors())
    assert higher.assemble(request_trace())["n1_warnings"] == []


class FakeAdvice:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[int] = []

    def schema_graph(self) -> dict:
        return {"tables": []}

    def suggest_indexes(self, spans: Sequence[Span]) -> list[dict]:
        if self.fail:
            raise ConnectionError("postgres is down")
        self.seen.append(len(spans))
        return [{"table": "products", "columns": ["id"], "ddl": "CREATE INDEX ON products (id)", "reason": "n1",
                 "est_cost_before": 10.0, "est_cost_after": 1.0}]


def test_index_advice_is_included_and_its_failure_does_not_hide_the_trace() -> None:
    advice = FakeAdvice()
    trace = TraceAssembler(Observability(), detectors=RecordingDetectors().detectors(), advice=advice).assemble(
        request_trace())
    assert trace["suggested_indexes"][0]["ddl"] == "CREATE INDEX ON products (id)" and advice.seen == [14]
    assert trace["advice_error"] is None
    broken = TraceAssembler(Observability(), detectors=RecordingDetectors().detectors(), advice=FakeAdvice(True))
    trace = broken.assemble(request_trace())
    assert trace["suggested_indexes"] == [] and "postgres is down" in trace["advice_error"]
    assert TraceAssembler(Observability(), detectors=RecordingDetectors().detectors()).assemble(
        request_trace())["suggested_indexes"] == []


def test_logs_are_included_oldest_first() -> None:
    logs = [LogRecord(T, "fn", T0 + 5, "info", "create_order", "second"),
            LogRecord(T, "fn", T0 + 1, "debug", "create_order", "first")]
    trace = TraceAssembler(Observability(), detectors=RecordingDetectors().detectors()).assemble(request_trace(), logs)
    assert [r["message"] for r in trace["logs"]] == ["first", "second"]


def test_failed_function_makes_the_trace_an_error() -> None:
    spans = request_trace()
    spans[1] = span("fn", "gw", "function", "create_order", 1, 215, "error", function="create_order")
    assert assemble(spans)["status"] == "error"


def test_an_empty_trace_is_refused() -> None:
    with pytest.raises(ValueError):
        TraceAssembler(Observability(), detectors=RecordingDetectors().detectors()).assemble([])


def test_default_thresholds_match_the_manifest_defaults() -> None:
    from functions.observability.traces import DefaultThresholds

    defaults = Observability()
    assert (DefaultThresholds().slow_query_ms, DefaultThresholds().n_plus_one_threshold) == \
        (defaults.slow_query_ms, defaults.n_plus_one_threshold)
