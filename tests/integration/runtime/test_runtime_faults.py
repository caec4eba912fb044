"""Fault paths of the runtime with real Deno: cancellation, recursion, cached secrets, hostile outputs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from functions.runtime.host import Runtime, RuntimeOptions, Services
from functions.shared.context import CallContext
from functions.shared.errors import DatabaseUnavailable, FluxError
from functions.shared.manifest import load_project
from functions.shared.secrets import MemorySecretsStore
from functions.shared.spans import MemorySink
from tests.integration.runtime.conftest import write_project

pytestmark = pytest.mark.integration

FUNCTIONS: dict[str, tuple[dict, str]] = {
    "cached_secret": ({"secrets": ["API_TOKEN"]}, """
        let token;
        export default async function handler(input, ctx) {
          token ??= await ctx.secrets.get("API_TOKEN");
          ctx.log.info(`using ${token}`);
          return { ok: true };
        }"""),
    "slow": ({"timeout_ms": 10000}, """
        let running = 0;
        export default async function handler(input) {
          running += 1;
          const concurrentAtStart = running;
          try { await new Promise((r) => setTimeout(r, input.ms ?? 3000)); } finally { running -= 1; }
          return { concurrentAtStart };
        }"""),
    "impatient": ({"timeout_ms": 800, "invokes": ["slow"]}, """
        export default async function handler(input, ctx) { return await ctx.function.invoke("slow", {}); }"""),
    "recurse": ({"timeout_ms": 20000, "invokes": ["recurse"]}, """
        export default async function handler(input, ctx) {
          return await ctx.function.invoke("recurse", { n: (input.n ?? 0) + 1 });
        }"""),
    "deep": ({}, """
        export default async function handler(input, ctx) {
          let v = {}; for (let i = 0; i < 5000; i++) v = { v };
          if (input.log) { ctx.log.info("deep", { v }); return { logged: true }; }
          return v;
        }"""),
    "tamper": ({}, """
        export default async function handler() {
          const e = new FluxError(418, "teapot", "short and stout");
          try { e.status = 200; } catch (_) { /* read-only */ }
          throw e;
        }"""),
    "reads_db": ({}, """
        export default async function handler(input, ctx) { return await ctx.db.query({ table: "t", operation: "select" }); }"""),
}


class DownDatabase:
    async def query(self, query: Any, call: CallContext) -> dict[str, Any]:
        raise DatabaseUnavailable("the database is unreachable", headers={"Retry-After": "5"})

    async def batch(self, queries: Any, call: CallContext) -> list[dict[str, Any]]:
        raise DatabaseUnavailable("the database is unreachable", headers={"Retry-After": "5"})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    root: Path = tmp_path_factory.mktemp("faults")
    write_project(root, {"name": "faults"}, FUNCTIONS)
    loop = asyncio.new_event_loop()
    sink = MemorySink()
    runtime = Runtime(load_project(root), options=RuntimeOptions(state_dir=root / ".flux", max_workers=3),
                      services=Services(db=DownDatabase(), secrets=MemorySecretsStore({"API_TOKEN": "tok-abcdef123"})))
    loop.run_until_complete(runtime.start())
    yield loop, runtime, sink
    loop.run_until_complete(runtime.close())
    loop.close()


def invoke(env, function: str, payload: Any = None, trace: str = "a" * 32) -> Any:
    loop, runtime, sink = env
    return loop.run_until_complete(runtime.invoke(function, payload or {}, CallContext(trace, None, "", trace, sink)))


def test_a_secret_cached_by_a_warm_worker_stays_redacted_in_later_requests(env):
    _, _, sink = env
    for trace in ("1" * 32, "2" * 32, "3" * 32):
        invoke(env, "cached_secret", trace=trace)
    messages = [log.message for log in sink.logs if log.function == "cached_secret"]
    assert len(messages) == 3
    assert all("tok-abcdef123" not in m for m in messages)
    assert all("[redacted]" in m for m in messages)


def test_a_cancelled_nested_invoke_does_not_leave_its_worker_running(env):
    with pytest.raises(FluxError) as caught:
        invoke(env, "impatient")
    assert caught.value.status == 504
    result = invoke(env, "slow", {"ms": 10})
    assert result == {"concurrentAtStart": 1}
    cancelled = [s for s in env[2].spans if s.name == "slow" and s.attrs.get("error.code") == "cancelled"]
    assert cancelled, "the cancelled invocation has no span"


def test_runaway_recursion_is_stopped_by_the_depth_guard(env):
    started = time.monotonic()
    with pytest.raises(FluxError) as caught:
        invoke(env, "recurse")
    assert caught.value.code == "invocation_loop"
    assert time.monotonic() - started < 10
    assert invoke(env, "slow", {"ms": 1}) == {"concurrentAtStart": 1}


def test_deeply_nested_output_is_a_clear_error_and_the_worker_survives(env):
    started = time.monotonic()
    with pytest.raises(FluxError) as caught:
        invoke(env, "deep")
    assert caught.value.status == 500 and "nested too deeply" in caught.value.message
    assert time.monotonic() - started < 5
    assert invoke(env, "deep", {"log": True}) == {"logged": True}


def test_flux_error_status_cannot_be_tampered_with(env):
    with pytest.raises(FluxError) as caught:
        invoke(env, "tamper")
    assert caught.value.status in (418, 500)
    assert caught.value.status != 200


def test_database_unavailable_keeps_retry_after_through_user_code(env):
    with pytest.raises(FluxError) as caught:
        invoke(env, "reads_db")
    assert caught.value.status == 503 and caught.value.code == "database_unavailable"
    assert caught.value.headers.get("retry-after") == "5"
