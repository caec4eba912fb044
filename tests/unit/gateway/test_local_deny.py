"""``flux dev`` answers an authorizer's verdict exactly as API Gateway would.

Flux's authorizer only soft-denies, so a refusal reaches the runtime, which answers
with Flux's body (same in AWS). A hard deny (``isAuthorized: false``) is what API
Gateway answers itself with a bare 403 and no ``x-request-id``; the local gateway
plays that too, instead of inventing a Flux body AWS would never send.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from functions.local.gateway import LocalGateway
from functions.shared.apigw import HttpRequest, proxy_result


class RecordingPipeline:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def set_project(self, project: Any) -> None:
        self.project = project

    async def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return proxy_result(200, {"ok": True})


def _gateway(helpers: Any, verdict: dict[str, Any]) -> tuple[LocalGateway, RecordingPipeline]:
    project = helpers.build_project({"create_order": {"route": "/orders", "method": "POST", "auth": "api_key"}})
    pipeline = RecordingPipeline()
    return LocalGateway(project, pipeline, authorize=lambda event: verdict), pipeline  # type: ignore[arg-type]


def test_a_hard_deny_is_api_gateways_bare_403(helpers: Any) -> None:
    gateway, pipeline = _gateway(helpers, {"isAuthorized": False})
    response = asyncio.run(gateway.handle(HttpRequest("POST", "/orders", body=b"{}")))
    assert response.status == 403
    assert json.loads(response.body) == {"message": "Forbidden"}
    assert pipeline.events == []  # the function's runtime never saw the request


def test_a_soft_deny_reaches_the_runtime_with_its_verdict(helpers: Any) -> None:
    context = {"outcome": "deny", "error": "unauthorized", "message": "missing or invalid credentials"}
    gateway, pipeline = _gateway(helpers, {"isAuthorized": True, "context": context})
    asyncio.run(gateway.handle(HttpRequest("POST", "/orders", body=b"{}")))
    assert pipeline.events[0]["requestContext"]["authorizer"] == {"lambda": context}
