"""The observability API over a seeded SQLite store, called as the Lambda and the dev server call it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from jsonschema import Draft202012Validator
from observability_seed import FAILED_TRACE, LIST_TRACES, ORDER_TRACE, FakeAdvice, seed
from referencing import Registry, Resource

from functions.observability.api import ObservabilityApi
from functions.observability.openapi import openapi_document
from functions.observability.sqlite_store import SqliteSpanStore
from functions.shared.apigw import HttpRequest, build_event
from functions.shared.manifest import Observability

NOW = 1_750_000_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteSpanStore]:
    store = SqliteSpanStore(tmp_path / "traces.db")
    seed(store, NOW)
    yield store
    store.close()


@pytest.fixture
def api(store: SqliteSpanStore) -> ObservabilityApi:
    return ObservabilityApi(store, settings=Observability(), advice=FakeAdvice(), clock=lambda: NOW)


def call(api: ObservabilityApi, path: str, params: dict[str, Any] | None = None, *, method: str = "GET",
         headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, dict[str, str], Any]:
    event = build_event(HttpRequest(method, path, urlencode(params or {}), headers), route_key="$default")
    result = api.handle(event)
    body = result["body"]
    if result["headers"]["content-type"].startswith("application/json"):
        body = json.loads(body)
    return result["statusCode"], result["headers"], body


def validator(name: str) -> Draft202012Validator:
    document = openapi_document()
    registry = Registry().with_resource("urn:flux", Resource.from_contents(
        {**document, "$schema": "https://json-schema.org/draft/2020-12/schema"}))
    return Draft202012Validator({"$ref": f"urn:flux#/components/schemas/{name}"}, registry=registry)


def test_traces_list_newest_first_and_matches_the_schema(api: ObservabilityApi) -> None:
    status, headers, body = call(api, "/_flux/api/traces")
    assert status == 200 and len(headers["x-request-id"]) == 32
    assert [t["trace_id"] for t in body["traces"]] == [ORDER_TRACE, FAILED_TRACE, *reversed(LIST_TRACES)]
    assert body["count"] == 6
    first = body["traces"][0]
    assert first["method"] == "POST" and first["route"] == "/orders" and first["http_status"] == 200
    assert first["duration_ms"] == 236.0 and first["function"] == "create_order"
    validator("TraceList").validate(body)


@pytest.mark.parametrize(("params", "expected"), [
    ({"function": "refund"}, [FAILED_TRACE]),
    ({"status": "error"}, [FAILED_TRACE]),
    ({"limit": "2"}, [ORDER_TRACE, FAILED_TRACE]),
    ({"since": "25s"}, [ORDER_TRACE]),
    ({"since": "2h", "function": "list_orders", "limit": "1"}, [LIST_TRACES[-1]]),
    ({"since": "2000-01-01T00:00:00Z"}, [ORDER_TRACE, FAILED_TRACE, *reversed(LIST_TRACES)]),
    ({"since": "2100-01-01"}, []),
    ({"function": ""}, [ORDER_TRACE, FAILED_TRACE, *reversed(LIST_TRACES)]),
    ({"since": "999999999w"}, [ORDER_TRACE, FAILED_TRACE, *reversed(LIST_TRACES)]),
    ({"since": "1970-01-01t00:00:00.1234567z"}, [ORDER_TRACE, FAILED_TRACE, *reversed(LIST_TRACES)]),
])
def test_trace_filters(api: ObservabilityApi, params: dict[str, str], expected: list[str]) -> None:
    status, _, body = call(api, "/_flux/api/traces", params)
    assert status == 200
    assert [t["trace_id"] for t in body["traces"]] == expected


@pytest.mark.parametrize(("path", "params", "mentions"), [
    ("/_flux/api/traces", {"limit": "0"}, "limit"),
    ("/_flux/api/traces", {"limit": "abc"}, "limit"),
    ("/_flux/api/traces", {"limit": "1001"}, "limit"),
    ("/_flux/api/traces", {"limit": "٣"}, "limit"),
    ("/_flux/api/traces", {"status": "weird"}, "status"),
    ("/_flux/api/traces", {"since": "yesterday"}, "since"),
    ("/_flux/api/traces", {"since": "15 minutes"}, "since"),
    ("/_flux/api/traces", {"since": "2024-13-01"}, "since"),
    ("/_flux/api/traces", {"function": "no spaces please"}, "function"),
    ("/_flux/api/logs", {"level": "loud"}, "level"),
    ("/_flux/api/logs", {"request_id": "xyz"}, "request_id"),
    ("/_flux/api/logs", {"limit": "10001"}, "limit"),
    ("/_flux/api/suggestions", {"limit": "201"}, "limit"),
    ("/_flux/api/traces/not-a-trace", {}, "trace id"),
])
def test_bad_parameters_are_400_with_the_standard_body(api: ObservabilityApi, path: str, params: dict[str, str],
                                                       mentions: str) -> None:
    status, headers, body = call(api, path, params)
    assert status == 400
    assert body["error"] == "validation_failed" and mentions in body["message"]
    assert body["request_id"] == headers["x-request-id"]
    validator("Error").validate(body)


def test_trace_detail_has_tree_async_branch_findings_and_logs(api: ObservabilityApi) -> None:
    status, _, trace = call(api, f"/_flux/api/traces/{ORDER_TRACE}")
    assert status == 200
    validator("Trace").validate(trace)
    assert trace["span_count"] == 16 and trace["status"] == "ok" and trace["duration_ms"] == 358.0
    assert trace["root"]["kind"] == "gateway"
    function = trace["root"]["children"][0]
    enqueue = function["children"][-1]
    assert enqueue["name"] == "enqueue send_invoice"
    attempt = enqueue["children"][0]
    assert attempt["name"] == "async → send_invoice" and attempt["async"]
    assert [c["name"] for c in attempt["children"][0]["children"]] == ["update orders", "POST api.mail.test"]
    n1 = trace["n1_warnings"]
    assert len(n1) == 1 and n1[0]["table"] == "products" and n1[0]["count"] == 6 and n1[0]["concurrent"] is True
    assert [q["table"] for q in trace["slow_queries"]] == ["order_items"]
    assert trace["suggested_indexes"][0]["ddl"].startswith("CREATE INDEX")
    assert [r["message"] for r in trace["logs"]] == ["order created", "queued invoice", "invoice sent"]
    flagged = {s["name"] for s in trace["spans"] if s["n_plus_one"]}
    assert flagged == {"select products"}


def test_trace_with_configured_thresholds(store: SqliteSpanStore) -> None:
    strict = ObservabilityApi(store, settings=Observability(slow_query_ms=10, n_plus_one_threshold=7))
    _, _, trace = call(strict, f"/_flux/api/traces/{ORDER_TRACE}")
    assert trace["n1_warnings"] == []
    assert {q["table"] for q in trace["slow_queries"]} == {"order_items", "products"}
    assert trace["suggested_indexes"] == [] and trace["advice_error"] is None


def test_unknown_trace_is_404_and_uuid_ids_are_accepted(api: ObservabilityApi) -> None:
    status, _, body = call(api, "/_flux/api/traces/" + "e" * 32)
    assert status == 404 and body["error"] == "trace_not_found"
    uuid = f"{ORDER_TRACE[:8]}-{ORDER_TRACE[8:12]}-{ORDER_TRACE[12:16]}-{ORDER_TRACE[16:20]}-{ORDER_TRACE[20:]}"
    status, _, body = call(api, "/_flux/api/traces/" + uuid.upper())
    assert status == 200 and body["trace_id"] == ORDER_TRACE


def test_logs_filters(api: ObservabilityApi) -> None:
    _, _, body = call(api, "/_flux/api/logs")
    assert body["count"] == 5
    validator("LogList").validate(body)
    _, _, body = call(api, "/_flux/api/logs", {"level": "WARN"})
    assert [r["message"] for r in body["logs"]] == ["refund without amount",
                                                     "TypeError: Cannot read properties of undefined"]
    _, _, body = call(api, "/_flux/api/logs", {"request_id": ORDER_TRACE, "function": "send_invoice"})
    assert [r["message"] for r in body["logs"]] == ["invoice sent"]
    _, _, body = call(api, "/_flux/api/logs", {"limit": "1"})
    assert [r["message"] for r in body["logs"]] == ["invoice sent"]


def test_schema_graph_with_and_without_a_database(api: ObservabilityApi, store: SqliteSpanStore) -> None:
    status, _, graph = call(api, "/_flux/api/schema/graph")
    assert status == 200 and [t["name"] for t in graph["tables"]][:2] == ["users", "orders"]
    validator("SchemaGraph").validate(graph)
    status, _, body = call(ObservabilityApi(store), "/_flux/api/schema/graph")
    assert status == 503 and body["error"] == "schema_unavailable"


def test_suggestions_aggregate_recent_traces(api: ObservabilityApi) -> None:
    status, _, body = call(api, "/_flux/api/suggestions")
    assert status == 200
    validator("Suggestions").validate(body)
    assert body["traces_scanned"] == 6
    assert body["n1_warnings"][0]["table"] == "products" and body["n1_warnings"][0]["trace_ids"] == [ORDER_TRACE]
    assert body["n1_warnings"][0]["functions"] == ["create_order"]
    assert body["slow_queries"][0]["table"] == "order_items" and body["slow_queries"][0]["occurrences"] == 1
    assert len(body["suggested_indexes"]) == 1
    _, _, none = call(api, "/_flux/api/suggestions", {"since": "1s"})
    assert none["traces_scanned"] == 0 and none["n1_warnings"] == []


def test_request_id_is_echoed_and_errors_carry_it(api: ObservabilityApi) -> None:
    rid = "1234567890abcdef1234567890abcdef"
    status, headers, _ = call(api, "/_flux/api/traces", headers=(("x-request-id", rid),))
    assert status == 200 and headers["x-request-id"] == rid
    status, headers, body = call(api, "/_flux/api/nope", headers=(("X-Request-Id", rid),))
    assert status == 404 and body == {"error": "route_not_found", "message": "no observability API route at "
                                      "/_flux/api/nope", "request_id": rid}


def test_only_get_is_allowed(api: ObservabilityApi) -> None:
    status, headers, body = call(api, "/_flux/api/traces", method="POST")
    assert status == 405 and headers["allow"] == "GET" and body["error"] == "method_not_allowed"


def test_authorize_guards_the_api_but_not_the_dashboard(store: SqliteSpanStore) -> None:
    seen: list[str] = []

    def authorize(event: dict[str, Any]) -> bool:
        seen.append(event["rawPath"])
        return event["headers"].get("x-api-key") == "good"

    api = ObservabilityApi(store, authorize=authorize)
    status, _, body = call(api, "/_flux/api/traces")
    assert status == 401 and body["error"] == "unauthorized"
    status, _, _ = call(api, "/_flux/api/traces", headers=(("x-api-key", "good"),))
    assert status == 200
    status, _, page = call(api, "/_flux/")
    assert status == 200 and "<html" in page
    assert seen == ["/_flux/api/traces", "/_flux/api/traces"]


def test_dashboard_files_are_served_with_the_configured_paths(store: SqliteSpanStore) -> None:
    api = ObservabilityApi(store)
    status, headers, page = call(api, "/_flux/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert '<base href="/_flux/">' in page and 'content="/_flux/api"' in page
    assert call(api, "/_flux")[0] == 200
    status, headers, script = call(api, "/_flux/assets/lib.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and "fetch(" in script
    for name in ("app.js", "trace.js", "schema.js", "favicon.svg"):
        assert call(api, f"/_flux/assets/{name}")[0] == 200
        assert f'src="assets/{name}"' in page or name == "favicon.svg"
    assert call(api, "/_flux/assets/style.css")[1]["content-type"].startswith("text/css")
    for bad in ("/_flux/assets/../api.py", "/_flux/assets/missing.js", "/_flux/assets/index.html", "/_flux/x"):
        assert call(api, bad)[0] == 404
    hosted = ObservabilityApi(store, prefix="/admin/api", dashboard_path="/admin/ui")
    _, _, page = call(hosted, "/admin/ui/")
    assert '<base href="/admin/ui/">' in page and 'content="/admin/api"' in page
    assert call(hosted, "/admin/api/traces")[0] == 200 and call(hosted, "/_flux/api/traces")[0] == 404


class BrokenStore(SqliteSpanStore):
    def list_traces(self, **kwargs: Any) -> list:
        raise OSError("disk I/O error")


def test_a_broken_store_is_a_500_with_the_standard_body(tmp_path: Path) -> None:
    api = ObservabilityApi(BrokenStore(tmp_path / "t.db"))
    status, headers, body = call(api, "/_flux/api/traces")
    assert status == 500 and body["error"] == "internal_error" and body["request_id"] == headers["x-request-id"]
    assert "disk" not in body["message"]


def test_openapi_document_is_served_and_valid(api: ObservabilityApi) -> None:
    from jsonschema.validators import validator_for

    status, _, document = call(api, "/_flux/api/openapi.json")
    assert status == 200 and document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {"/traces", "/traces/{trace_id}", "/logs", "/schema/graph", "/suggestions",
                                      "/openapi.json"}
    assert document["servers"] == [{"url": "/_flux/api"}]
    for schema in document["components"]["schemas"].values():
        validator_for(schema).check_schema(schema)
