"""Property-based run of schemathesis against /openapi.json, in process through the ASGI adapter.

Every generated request must get a documented status (never a 500) and a body that
matches the documented schema; schemathesis' default checks (status code, content
type, response schema, headers conformance, not_a_server_error) run on each call.
Bounded: a few dozen examples per operation, a few seconds in all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from observability_seed import ORDER_TRACE, FakeAdvice, seed

from functions.observability.api import ObservabilityApi
from functions.observability.asgi import asgi_app
from functions.observability.sqlite_store import SqliteSpanStore


def test_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    store = SqliteSpanStore(tmp_path / "traces.db")
    seed(store)
    app = asgi_app(ObservabilityApi(store, advice=FakeAdvice()))
    schema = schemathesis.openapi.from_asgi("/_flux/api/openapi.json", app)
    statuses: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the operation that serves the schema itself.
    assert {op.label for op in operations} == {"GET /traces", "GET /traces/{trace_id}", "GET /logs",
                                              "GET /schema/graph", "GET /suggestions"}

    def fuzz(operation: Any) -> None:
        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call_and_validate()
            assert response.status_code < 500
            statuses.setdefault(operation.label, set()).add(response.status_code)

        run()

    for operation in operations:
        fuzz(operation)

    # A known trace id exercises the full trace response, not only 404s.
    trace = schema["/traces/{trace_id}"]["GET"]
    case = trace.Case(path_parameters={"trace_id": ORDER_TRACE})
    assert case.call_and_validate().status_code == 200
    assert 200 in statuses["GET /traces"] and 200 in statuses["GET /logs"]
    store.close()
