"""The ASGI adapter: HTTP → API Gateway v2 event → ObservabilityApi → HTTP, through the shared converter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from observability_seed import ORDER_TRACE, seed

from functions.observability.api import ObservabilityApi
from functions.observability.asgi import MAX_BODY_BYTES, asgi_app
from functions.observability.sqlite_store import SqliteSpanStore


class Recorder:
    def __init__(self, inner: ObservabilityApi) -> None:
        self.inner = inner
        self.events: list[dict[str, Any]] = []

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return self.inner.handle(event)


def test_requests_become_events_and_results_become_responses(tmp_path: Path) -> None:
    store = SqliteSpanStore(tmp_path / "t.db")
    seed(store)
    api = Recorder(ObservabilityApi(store))

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=asgi_app(api))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [
                await client.get("/_flux/api/traces", params={"function": "create_order", "limit": "5"},
                                 headers={"x-request-id": "ab" * 16, "cookie": "a=1; b=2"}),
                await client.get(f"/_flux/api/traces/{ORDER_TRACE}"),
                await client.post("/_flux/api/traces", content=b"x" * (MAX_BODY_BYTES + 1)),
                await client.post("/_flux/api/traces", content=b"{}"),
            ]

    listed, trace, too_big, post = asyncio.run(scenario())
    assert listed.status_code == 200 and listed.headers["x-request-id"] == "ab" * 16
    assert [t["trace_id"] for t in listed.json()["traces"]] == [ORDER_TRACE]
    event = api.events[0]
    assert event["version"] == "2.0" and event["rawPath"] == "/_flux/api/traces"
    assert event["queryStringParameters"] == {"function": "create_order", "limit": "5"}
    assert event["cookies"] == ["a=1", "b=2"] and "cookie" not in event["headers"]
    assert trace.json()["span_count"] == 16
    assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"
    assert len(api.events) == 3  # the oversized body never reached the API
    assert post.status_code == 405 and post.json()["error"] == "method_not_allowed"
    store.close()
