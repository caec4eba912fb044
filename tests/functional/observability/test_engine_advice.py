"""The hosted API's schema graph and index advice through the engine Lambda's real handler protocol."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pytest
from observability_seed import ORDER_TRACE, FakeAdvice, seed

from functions.aws import entry_observability as lambda_handler
from functions.aws.entry_engine import make_handler
from functions.observability.dynamo_store import DynamoSpanStore
from functions.observability.engine_advice import EngineUnavailable, LambdaAdvice
from functions.shared.apigw import HttpRequest, build_event
from functions.shared.errors import DatabaseUnavailable, FluxError
from functions.shared.spans import Span


class InProcessLambda:
    """A boto3 Lambda client stand-in that runs the engine handler in process (moto needs Docker for Lambda)."""

    def __init__(self, engine: Any, *, crash: bool = False) -> None:
        self.engine = engine
        self.crash = crash
        self.calls: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        event = json.loads(Payload)
        self.calls.append({"function": FunctionName, **event})
        if self.crash:
            return {"StatusCode": 200, "FunctionError": "Unhandled",
                    "Payload": io.BytesIO(b'{"errorMessage": "Task timed out"}')}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(self.engine(event, None)).encode())}


class RecordingAdvice(FakeAdvice):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def suggest_indexes(self, spans: Sequence[Span]) -> list[dict[str, Any]]:
        self.seen.append(len(spans))
        return super().suggest_indexes(spans)


def engine(advice: Any) -> Any:
    return make_handler(dsn_provider=lambda: "postgresql://unused", advice_factory=lambda dsn: advice, env={})


def test_trace_and_schema_graph_come_from_the_engine_lambda(dynamo_client: Any) -> None:
    seed(DynamoSpanStore(dynamo_client, "flux-spans", shards=4))
    advice = RecordingAdvice()
    client = InProcessLambda(engine(advice))
    api = lambda_handler.build_api({"SPANS_TABLE": "flux-spans", "SPANS_SHARDS": "4", "ENGINE_FUNCTION": "flux-engine"},
                                   client=dynamo_client, lambda_client=client)
    api.authorize = None
    trace = json.loads(api.handle(build_event(HttpRequest("GET", f"/_flux/api/traces/{ORDER_TRACE}"),
                                              route_key="$default"))["body"])
    assert trace["suggested_indexes"][0]["table"] == "order_items"
    assert client.calls[0]["action"] == "suggest" and client.calls[0]["function"] == "flux-engine"
    assert {s["kind"] for s in client.calls[0]["spans"]} == {"db"} and advice.seen == [10]
    graph = json.loads(api.handle(build_event(HttpRequest("GET", "/_flux/api/schema/graph"), route_key="$default"))
                       ["body"])
    assert [t["name"] for t in graph["tables"]] == ["users", "orders", "products", "order_items"]
    assert graph["suggested_indexes"][0]["ddl"].startswith("CREATE INDEX")
    assert client.calls[1]["action"] == "schema_graph" and len(client.calls[1]["spans"]) == 16  # db spans of all six traces


def test_engine_refusals_keep_their_status_and_crashes_are_502() -> None:
    class Down(FakeAdvice):
        def schema_graph(self) -> dict[str, Any]:
            raise DatabaseUnavailable("database unreachable", headers={"retry-after": "5"})

    with pytest.raises(FluxError) as info:
        LambdaAdvice("flux-engine", InProcessLambda(engine(Down()))).schema_graph()
    assert (info.value.status, info.value.code, info.value.headers) == (503, "database_unavailable",
                                                                        {"retry-after": "5"})
    with pytest.raises(EngineUnavailable, match="Task timed out"):
        LambdaAdvice("flux-engine", InProcessLambda(engine(FakeAdvice()), crash=True)).schema_graph()
    assert LambdaAdvice("flux-engine", InProcessLambda(engine(FakeAdvice()))).suggest_indexes([]) == []
