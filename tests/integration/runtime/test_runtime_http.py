"""The runtime with real Deno workers, driven through the local gateway in-process."""

from __future__ import annotations

import json
import os
import time

import pytest

from functions.shared.apigw import HttpRequest, HttpResponse

pytestmark = pytest.mark.integration


def call(h, name: str, body: object = None, *, method: str = "POST", path: str | None = None,
         headers: tuple = (), raw: bytes | None = None) -> HttpResponse:
    data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
    request = HttpRequest(method, path or f"/{name}", headers=(("content-type", "application/json"), *headers),
                          body=data)
    return h.run(h.stack.gateway.handle(request))


def spans_of(h, trace_id: str):
    return [s for s in h.memory.spans if s.trace_id == trace_id]


def test_hello_returns_json_with_request_id_and_ctx(harness):
    response = call(harness, "hello", {"name": "Ada"})
    assert response.status == 200
    request_id = response.header("x-request-id")
    assert request_id and len(request_id) == 32
    body = response.json()
    assert body["hello"] == "Ada"
    assert body["requestId"] == request_id == body["traceId"]
    assert body["fn"] == "hello"
    assert body["auth"] == {"type": "none"}


def test_trace_has_gateway_root_with_function_child_and_logs(harness):
    response = call(harness, "hello", {"name": "Bo"})
    trace_id = response.header("x-request-id")
    spans = spans_of(harness, trace_id)
    gateway = next(s for s in spans if s.kind == "gateway")
    function = next(s for s in spans if s.kind == "function")
    assert gateway.parent_span_id is None
    assert gateway.attrs["http.status"] == 200
    assert gateway.attrs["function"] == "hello"
    assert function.parent_span_id == gateway.span_id
    assert function.name == "hello" and function.status == "ok"
    logs = [log for log in harness.memory.logs if log.trace_id == trace_id]
    messages = [log.message for log in logs]
    assert "hello called" in messages
    assert any(m.startswith("console line") for m in messages)
    assert next(log for log in logs if log.message == "hello called").fields == {"name": "Bo"}
    assert all(log.function == "hello" for log in logs)


def test_incoming_request_id_and_traceparent_are_kept_for_correlation_only(harness):
    """Issue #14 (12): a caller's id never becomes the trace id, so it cannot graft spans into another trace."""
    first = call(harness, "hello", {})
    victim = first.header("x-request-id")
    response = call(harness, "hello", {}, headers=(("x-request-id", victim),))
    mine = response.header("x-request-id")
    assert mine != victim and len(mine) == 32
    assert len([s for s in spans_of(harness, victim) if s.kind == "gateway"]) == 1
    gateway = next(s for s in spans_of(harness, mine) if s.kind == "gateway")
    assert gateway.attrs["correlation.request_id"] == victim
    parent = "fedcba9876543210fedcba9876543210"
    response = call(harness, "hello", {}, headers=(("traceparent", f"00-{parent}-00f067aa0ba902b7-01"),))
    assert response.header("x-request-id") != parent
    gateway = next(s for s in spans_of(harness, response.header("x-request-id")) if s.kind == "gateway")
    assert gateway.parent_span_id is None
    assert (gateway.attrs["correlation.trace_id"], gateway.attrs["correlation.parent_span_id"]) == (
        parent, "00f067aa0ba902b7")
    response = call(harness, "hello", {}, headers=(("x-request-id", "not-a-valid-id"),))
    assert response.header("x-request-id") != "not-a-valid-id"
    assert len(response.header("x-request-id")) == 32


def _assert_error(response: HttpResponse, status: int, code: str) -> dict:
    assert response.status == status, response.body
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == code
    assert body["request_id"] == response.header("x-request-id")
    return body


def test_uncaught_throw_is_500_with_source_location_in_trace(harness):
    response = call(harness, "boom")
    body = _assert_error(response, 500, "function_error")
    assert "kaboom 1" in body["message"]
    function = next(s for s in spans_of(harness, body["request_id"]) if s.kind == "function")
    assert function.status == "error"
    assert function.attrs["error.file"].endswith("functions/boom/index.ts")
    assert function.attrs["error.line"] == 4
    assert "kaboom" in function.attrs["error.stack"]


def test_flux_error_sets_status_and_code(harness):
    body = _assert_error(call(harness, "teapot"), 418, "teapot")
    assert body["message"] == "short and stout"


def test_timeout_is_504_and_worker_is_replaced(harness):
    pool = harness.stack.runtime.pool("loop")
    started = time.monotonic()
    response = call(harness, "loop", {})
    elapsed = time.monotonic() - started
    _assert_error(response, 504, "function_timeout")
    assert 0.6 < elapsed < 3.0
    assert call(harness, "loop", {"quick": True}).status == 200
    assert pool.size >= 1


def test_timed_out_worker_process_group_is_gone(harness):
    pool = harness.stack.runtime.pool("loop")
    worker, _ = harness.run(pool.acquire())
    pid = worker.process.pid
    harness.run(pool.release(worker))
    assert call(harness, "loop", {}).status == 504
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the timed-out worker's process group is still alive")


def test_crash_is_502_and_next_request_works(harness):
    _assert_error(call(harness, "crash", {}), 502, "runtime_crashed")
    assert call(harness, "crash", {"quick": True}).json() == {"ok": True}


def test_out_of_memory_is_502_and_next_request_works(harness):
    body = _assert_error(call(harness, "hog", {}), 502, "runtime_crashed")
    assert "memory" in body["message"] or "exited" in body["message"] or "signal" in body["message"]
    assert call(harness, "hog", {"quick": True}).json() == {"ok": True}


def test_env_access_is_denied(harness):
    body = _assert_error(call(harness, "reads_env"), 500, "function_error")
    assert "NotCapable" in body["message"] and "env" in body["message"]


def test_file_writes_are_denied(harness, tmp_path):
    target = tmp_path / "pwned.txt"
    body = _assert_error(call(harness, "writes_file", {"path": str(target)}), 500, "function_error")
    assert "write access" in body["message"]
    assert not target.exists()


def test_loopback_fetch_is_denied_and_server_stays_healthy(harness, loopback_server):
    body = _assert_error(call(harness, "fetches", {"url": loopback_server}), 500, "function_error")
    assert "net access" in body["message"]
    assert call(harness, "hello", {"name": "still here"}).status == 200


def test_link_local_metadata_fetch_is_denied(harness):
    body = _assert_error(call(harness, "fetches", {"url": "http://169.254.169.254/latest/meta-data/"}), 500,
                         "function_error")
    assert "net access" in body["message"]


def test_user_stdout_cannot_forge_or_corrupt_frames(harness):
    response = call(harness, "noisy")
    assert response.status == 200
    assert response.json() == {"genuine": True}
    trace_id = response.header("x-request-id")
    messages = [log.message for log in harness.memory.logs if log.trace_id == trace_id]
    assert any("raw bytes without newline" in m for m in messages)
    assert any("forged" in m for m in messages)


def test_secret_values_are_readable_but_redacted_from_logs_and_spans(harness):
    response = call(harness, "uses_secret")
    assert response.json() == {"length": len("s3cr3t-token-value"), "other": "fallback-value"}
    trace_id = response.header("x-request-id")
    dumped = json.dumps([log.to_dict() for log in harness.memory.logs if log.trace_id == trace_id])
    dumped += json.dumps([s.to_dict() for s in spans_of(harness, trace_id)])
    assert "s3cr3t-token-value" not in dumped
    assert "[redacted]" in dumped


def test_missing_secret_error_names_it(harness):
    body = _assert_error(call(harness, "missing_secret"), 500, "function_error")
    assert "NOPE_NOT_SET" in body["message"] and "flux secrets set" in body["message"]


def test_function_invoke_and_custom_span_nest_in_the_trace(harness):
    response = call(harness, "caller")
    assert response.json()["inner"]["hello"] == "from caller"
    spans = spans_of(harness, response.header("x-request-id"))
    by_id = {s.span_id: s for s in spans}
    custom = next(s for s in spans if s.kind == "custom" and s.name == "prepare")
    inner = next(s for s in spans if s.kind == "function" and s.name == "hello")
    outer = next(s for s in spans if s.kind == "function" and s.name == "caller")
    assert custom.parent_span_id == outer.span_id
    assert inner.parent_span_id == custom.span_id
    assert custom.attrs["step"] == 1
    assert by_id[outer.parent_span_id].kind == "gateway"


def test_non_json_return_value_is_a_clear_500(harness):
    body = _assert_error(call(harness, "bad_return"), 500, "function_error")
    assert "not JSON" in body["message"]


def test_module_without_default_export_explains_itself(harness):
    body = _assert_error(call(harness, "no_default"), 500, "function_error")
    assert "export default" in body["message"]


def test_bad_requests_get_standard_errors(harness):
    _assert_error(call(harness, "hello", raw=b'{"name": '), 400, "invalid_json")
    _assert_error(call(harness, "hello", method="GET", path="/nowhere"), 404, "route_not_found")
    _assert_error(call(harness, "hello", raw=b'{"pad": "' + b"x" * 5000 + b'"}'), 413, "payload_too_large")


def test_input_schema_rejects_before_the_function_runs(harness):
    body = _assert_error(call(harness, "validated", {"qty": 0}), 400, "validation_failed")
    assert "qty" in body["message"]
    assert call(harness, "validated", {"qty": 2}).json() == {"qty": 2}


def test_path_and_query_parameters_reach_input(harness):
    request = HttpRequest("GET", "/items/42", raw_query="verbose=1")
    response = harness.run(harness.stack.gateway.handle(request))
    assert response.json() == {"id": "42", "verbose": "1"}


def test_concurrent_requests_use_the_pool(harness):
    import asyncio

    async def many():
        requests = [HttpRequest("POST", "/hello", body=json.dumps({"name": str(i)}).encode()) for i in range(20)]
        return await asyncio.gather(*(harness.stack.gateway.handle(r) for r in requests))

    responses = harness.run(many())
    assert sorted(r.json()["hello"] for r in responses) == sorted(str(i) for i in range(20))
    assert len({r.header("x-request-id") for r in responses}) == 20
