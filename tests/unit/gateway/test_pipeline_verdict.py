"""The pipeline reads the verdict once: allowed callers reach user code with ctx.auth, anything else never does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from functions.gateway.pipeline import HttpPipeline
from functions.gateway.verdict import Verdict
from functions.shared.apigw import HttpRequest, build_event
from functions.shared.manifest import load_project
from functions.shared.spans import MemorySink


class RecordingInvoker:
    """Stands in for the Deno pool: records what user code would have been called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    async def invoke(self, name: str, value: Any, call: Any) -> Any:
        self.calls.append((name, value, call.auth))
        return {"ok": True}


@pytest.fixture
def pipeline(tmp_path: Path) -> tuple[HttpPipeline, RecordingInvoker, MemorySink]:
    (tmp_path / "flux.json").write_text(json.dumps({"name": "p"}))
    for name, auth in (("open", "none"), ("closed", "api_key")):
        folder = tmp_path / "functions" / name
        folder.mkdir(parents=True)
        (folder / "index.ts").write_text("export default async function handler() { return {}; }")
        (folder / "flux.json").write_text(json.dumps({"method": "POST", "route": f"/{name}", "auth": auth}))
    invoker, sink = RecordingInvoker(), MemorySink()
    return HttpPipeline(load_project(tmp_path), invoker, sink=sink), invoker, sink


def _event(route: str, context: Any = None) -> dict[str, Any]:
    event = build_event(HttpRequest("POST", route, headers=(("content-type", "application/json"),), body=b"{}"),
                        route_key=f"POST {route}")
    if context is not None:
        event["requestContext"]["authorizer"] = {"lambda": context}
    return event


def test_an_allowed_verdict_reaches_user_code_with_its_caller(pipeline: Any) -> None:
    http, invoker, sink = pipeline
    verdict = Verdict(allowed=True, function="closed", auth_type="api_key", key_name="ci", scope="invoke",
                      ratelimit_outcome="allowed", ratelimit_limit=5, ratelimit_remaining=4, ratelimit_reset=12)
    result = asyncio.run(http.handle(_event("/closed", verdict.to_context())))
    assert result["statusCode"] == 200
    assert result["headers"]["ratelimit-remaining"] == "4"
    assert invoker.calls == [("closed", {}, {"type": "api_key", "key_name": "ci", "scope": "invoke"})]
    gateway = sink.spans[-1]
    assert gateway.attrs["auth.key_name"] == "ci" and gateway.attrs["ratelimit.remaining"] == 4


@pytest.mark.parametrize("context", [{"outcome": "allow", "auth_type": "root"}, {"outcome": "yes"}, "allow",
                                     {"outcome": "allow", "ratelimit_remaining": "many"}])
def test_a_malformed_verdict_is_401_even_on_an_open_route(pipeline: Any, context: Any) -> None:
    http, invoker, _ = pipeline
    result = asyncio.run(http.handle(_event("/open", context)))
    assert result["statusCode"] == 401
    assert json.loads(result["body"])["error"] == "unauthorized"
    assert invoker.calls == []


def test_no_verdict_is_401_on_a_protected_route_and_anonymous_on_an_open_one(pipeline: Any) -> None:
    http, invoker, _ = pipeline
    assert asyncio.run(http.handle(_event("/closed")))["statusCode"] == 401
    assert invoker.calls == []
    assert asyncio.run(http.handle(_event("/open")))["statusCode"] == 200
    assert invoker.calls == [("open", {}, {"type": "none"})]


def test_an_unavailable_authorizer_is_503_with_retry_after(pipeline: Any) -> None:
    http, invoker, _ = pipeline
    context = Verdict.refused("auth_unavailable", "the authorizer could not decide; retry shortly",
                              retry_after=5).to_context()
    result = asyncio.run(http.handle(_event("/closed", context)))
    assert result["statusCode"] == 503 and result["headers"]["retry-after"] == "5"
    assert invoker.calls == []
