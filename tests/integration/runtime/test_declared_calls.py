"""Issue #13 with real Deno: ctx.queue.push and ctx.function.invoke reach only what flux.json declares.

In AWS a function's role holds only the queues and secrets of its declared ``pushes``
and ``invokes`` (infra/plan.py); the runtime host refuses anything else first, with
the same answer in ``flux dev`` and in Lambda, naming the line to add.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.shared.apigw import HttpRequest, HttpResponse
from tests.integration.runtime.conftest import Harness, write_project

pytestmark = pytest.mark.integration

CATCHES = """
        export default async function handler(input, ctx) {
          try { return { value: await ctx.%s(input.target, input.payload ?? {}) }; }
          catch (e) { return { status: e.status, code: e.code, message: e.message }; }
        }"""

FUNCTIONS: dict[str, tuple[dict, str]] = {
    "pusher": ({"pushes": ["job_a"]}, CATCHES % "queue.push"),
    "pushes_uncaught": ({}, """
        export default async function handler(input, ctx) { return await ctx.queue.push("job_a", {}); }"""),
    "caller": ({"invokes": ["relay", "plain"]}, CATCHES % "function.invoke"),
    # Invoked by caller: its own declarations apply to what it calls, not the caller's.
    "relay": ({"invokes": ["plain"]}, """
        export default async function handler(input, ctx) {
          return { plain: await ctx.function.invoke("plain", {}), other: await ctx.function.invoke("other", {}) };
        }"""),
    "plain": ({}, """export default async function handler() { return "plain"; }"""),
    "other": ({}, """export default async function handler() { return "other"; }"""),
    "job_a": ({"async": True}, """export default async function handler() { return "a"; }"""),
    "job_b": ({"async": True}, """export default async function handler() { return "b"; }"""),
    "single": ({"concurrency": 1}, """export default async function handler() { return 1; }"""),
}


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness(write_project(tmp_path_factory.mktemp("calls"), {"name": "calls"}, FUNCTIONS))
    yield harness
    harness.close()


def call(h: Harness, name: str, body: Any = None) -> HttpResponse:
    request = HttpRequest("POST", f"/{name}", headers=(("content-type", "application/json"),),
                          body=json.dumps(body or {}).encode())
    return h.run(h.stack.gateway.handle(request))


def test_a_declared_push_is_enqueued(h: Harness) -> None:
    body = call(h, "pusher", {"target": "job_a"}).json()
    assert set(body["value"]) == {"job_id"}


def test_an_undeclared_push_is_a_403_naming_the_declaration_to_add(h: Harness) -> None:
    body = call(h, "pusher", {"target": "job_b"}).json()
    assert (body["status"], body["code"]) == (403, "push_not_declared")
    assert body["message"] == 'pusher may not push to job_b: add "pushes": ["job_a", "job_b"] to ' \
                              "functions/pusher/flux.json"


def test_an_uncaught_undeclared_push_answers_with_the_standard_error_body(h: Harness) -> None:
    response = call(h, "pushes_uncaught")
    assert response.status == 403
    body = response.json()
    assert body["error"] == "push_not_declared" and body["request_id"] == response.header("x-request-id")
    assert '"pushes": ["job_a"]' in body["message"] and "functions/pushes_uncaught/flux.json" in body["message"]


def test_a_push_to_no_function_or_to_a_sync_one_keeps_its_own_400(h: Harness) -> None:
    missing = call(h, "pusher", {"target": "ghost"}).json()
    assert (missing["status"], missing["code"]) == (400, "validation_failed") and "ghost" in missing["message"]
    sync = call(h, "pusher", {"target": "plain"}).json()
    assert (sync["status"], sync["code"]) == (400, "validation_failed") and "not async" in sync["message"]


def test_an_undeclared_invoke_is_a_403_and_a_declared_one_runs(h: Harness) -> None:
    assert call(h, "caller", {"target": "plain"}).json() == {"value": "plain"}
    body = call(h, "caller", {"target": "other"}).json()
    assert (body["status"], body["code"]) == (403, "invoke_not_declared")
    assert body["message"] == 'caller may not invoke other: add "invokes": ["relay", "plain", "other"] to ' \
                              "functions/caller/flux.json"


def test_a_callee_is_held_to_its_own_declarations(h: Harness) -> None:
    body = call(h, "caller", {"target": "relay"}).json()
    assert (body["status"], body["code"]) == (403, "invoke_not_declared")
    assert body["message"].startswith("relay may not invoke other") and "functions/relay/flux.json" in body["message"]


def test_concurrency_caps_the_local_worker_pool(h: Harness) -> None:
    assert h.stack.runtime.pool("single").max_workers == 1
    assert h.stack.runtime.pool("plain").max_workers == 2  # the harness's max_workers, under the default of 10

