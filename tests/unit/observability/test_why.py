"""`flux why`: failing span, error location, database writes and the next step."""

from __future__ import annotations

from functions.observability.why import db_writes, explain_failure


def span(sid: str, kind: str, name: str, depth: int, start: int, status: str = "ok", **attrs: object) -> dict:
    return {"span_id": sid, "kind": kind, "name": name, "depth": depth, "start_us": start, "duration_us": 10,
            "status": status, "attrs": dict(attrs), "async": False}


def failed_trace() -> dict:
    return {
        "trace_id": "t" * 32, "name": "POST /refunds", "function": "refund", "status": "error", "http_status": 500,
        "spans": [
            span("gw", "gateway", "POST /refunds", 0, 0, "error", **{"http.status": 500, "function": "refund"}),
            span("fn", "function", "refund", 1, 1, "error", **{
                "function": "refund", "error.code": "function_error", "error.message": "boom",
                "error.file": "functions/refund/index.ts", "error.line": 14, "error.stack": "Error: boom"}),
            span("d1", "db", "select orders", 2, 2, table="orders", operation="select", rows=1),
            span("d2", "db", "insert refunds", 2, 3, table="refunds", operation="insert", rows=1, function="refund"),
            span("d3", "db", "update orders", 2, 4, "error", table="orders", operation="update"),
        ],
    }


def test_names_the_throw_and_its_location() -> None:
    report = explain_failure(failed_trace())
    assert report["failed"] is True and report["failing_span"]["span_id"] == "fn"
    assert report["error"] == {"code": "function_error", "message": "boom", "file": "functions/refund/index.ts",
                               "line": 14, "stack": "Error: boom"}
    assert "functions/refund/index.ts:14" in report["next_step"]
    assert {e["span_id"] for e in report["error_spans"]} == {"gw", "fn", "d3"}


def test_lists_writes_and_warns_about_committed_ones() -> None:
    report = explain_failure(failed_trace())
    assert [(w["operation"], w["table"], w["status"]) for w in report["db_writes"]] == [
        ("insert", "refunds", "ok"), ("update", "orders", "error")]
    assert "1 database write(s) were committed" in report["next_step"] and "insert refunds" in report["next_step"]
    assert "ctx.db.batch" in report["next_step"]


def test_known_error_codes_get_specific_advice() -> None:
    trace = failed_trace()
    trace["spans"][1]["attrs"] = {"function": "refund", "error.code": "function_timeout", "error.message": "late"}
    report = explain_failure(trace)
    assert "timeout_ms" in report["next_step"] and "functions/refund/flux.json" in report["next_step"]


def test_a_successful_trace_has_nothing_to_explain() -> None:
    trace = failed_trace()
    trace["status"] = "ok"
    report = explain_failure(trace)
    assert report["failed"] is False and report["error"] is None and report["next_step"] is None
    assert len(report["db_writes"]) == 2


def test_gateway_only_failure_and_write_detection_by_name() -> None:
    trace = {"trace_id": "x", "name": "GET /", "status": "error", "http_status": 503,
             "spans": [span("gw", "gateway", "GET /", 0, 0, **{"http.status": 503}),
                       span("d", "db", "delete sessions", 1, 1)]}
    report = explain_failure(trace)
    assert report["failing_span"]["span_id"] == "gw" and "dashboard" in report["next_step"]
    assert db_writes(trace["spans"])[0]["operation"] == "delete"


def test_a_401_from_the_gateway_is_explained_by_its_gateway_span() -> None:
    trace = {"trace_id": "y", "name": "GET /me", "function": "whoami", "status": "ok", "http_status": 401,
             "spans": [span("gw", "gateway", "GET /me", 0, 0, **{
                 "http.status": 401, "error.code": "unauthorized", "auth.mode": "api_key",
                 "auth.outcome": "unauthorized", "ratelimit.outcome": "bypass", "function": "whoami"})]}
    report = explain_failure(trace)
    assert report["failed"] is True and report["failing_span"]["span_id"] == "gw"
    assert report["error"]["code"] == "unauthorized"
    assert report["error"]["message"] == ("the gateway answered 401 unauthorized before any function ran; "
                                          "auth mode api_key, outcome unauthorized")
    assert "refused the credentials before the function ran" in report["next_step"]
    assert "x-api-key" in report["next_step"]


def test_a_4xx_the_function_itself_returned_is_not_a_gateway_refusal() -> None:
    trace = {"trace_id": "z", "name": "GET /orders/{id}", "status": "ok", "http_status": 404,
             "spans": [span("gw", "gateway", "GET /orders/{id}", 0, 0, **{"http.status": 404,
                                                                           "error.code": "not_found"}),
                       span("fn", "function", "get_order", 1, 1)]}
    assert explain_failure(trace)["failed"] is False
