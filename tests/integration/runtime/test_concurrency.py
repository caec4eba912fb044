"""One Deno worker runs several invocations at once (issue #16), with real Deno: each keeps its own ctx, logs and
timers; module state is shared; a sibling's timeout fails the others with 503 worker_recycled; a crash fails them
all with 502 runtime_crashed; post-return work retires the worker without hurting the invocations still in it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from functions.runtime.host import Runtime, RuntimeOptions
from functions.shared.context import CallContext
from functions.shared.errors import FluxError
from functions.shared.manifest import load_project
from functions.shared.spans import MemorySink
from tests.integration.runtime.conftest import write_project

pytestmark = pytest.mark.integration

FUNCTIONS: dict[str, tuple[dict, str]] = {
    # Sleeps, logs its own name before and after, and says how many were running when it started.
    "sleeper": ({"timeout_ms": 5000}, """
        let running = 0;
        export default async function handler(input, ctx) {
          running += 1;
          const concurrentAtStart = running;
          ctx.log.info(`start ${input.name}`);
          try { await new Promise((r) => setTimeout(r, input.ms ?? 300)); } finally { running -= 1; }
          console.log(`end ${input.name}`);
          return { name: input.name, requestId: ctx.requestId, concurrentAtStart, pid: Deno.pid };
        }"""),
    # A runaway loop after a moment (times out), or an ordinary slow call.
    "runaway": ({"timeout_ms": 700}, """
        export default async function handler(input) {
          await new Promise((r) => setTimeout(r, 50));
          if (input.loop) while (true) {}
          if (input.crash) Deno.exit(3);
          await new Promise((r) => setTimeout(r, input.ms ?? 400));
          return { pid: Deno.pid };
        }"""),
    # Writes its caller's credential to raw stdout (stray output) while a sibling is in flight.
    "prints": ({"timeout_ms": 5000}, """
        export default async function handler(input, ctx) {
          await new Promise((r) => setTimeout(r, input.wait ?? 0));
          const token = ctx.request.headers["authorization"];
          await Deno.stdout.write(new TextEncoder().encode(`raw ${input.name}: ${token}\\n`));
          await new Promise((r) => setTimeout(r, input.after ?? 0));
          return { ok: true };
        }"""),
    # Returns at once but leaves a long timer behind (work after return), or sleeps and returns.
    "leaves_work": ({"timeout_ms": 5000}, """
        export default async function handler(input) {
          if (input.linger) { setTimeout(() => {}, 3000); return { pid: Deno.pid, lingering: true }; }
          await new Promise((r) => setTimeout(r, input.ms ?? 10));
          return { pid: Deno.pid };
        }"""),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    root: Path = tmp_path_factory.mktemp("concurrency")
    write_project(root, {"name": "concurrency"}, FUNCTIONS)
    loop = asyncio.new_event_loop()
    sink = MemorySink()
    # One worker per function: the faults below need the invocations side by side in the same one.
    runtime = Runtime(load_project(root), options=RuntimeOptions(state_dir=root / ".flux", max_workers=1))
    loop.run_until_complete(runtime.start())
    yield loop, runtime, sink
    loop.run_until_complete(runtime.close())
    loop.close()


async def _invoke(env, function: str, payload: Any, trace: str) -> Any:
    _, runtime, sink = env
    return await runtime.invoke(function, payload, CallContext(trace, None, "", trace, sink))


def _run(env, *calls: tuple[str, Any, str], stagger_s: float = 0.0) -> list[Any]:
    """Start the calls together (``stagger_s`` apart, in order) and gather results or errors."""
    loop = env[0]

    async def one(i: int, call: tuple[str, Any, str]) -> Any:
        await asyncio.sleep(i * stagger_s)
        return await _invoke(env, *call)

    async def together() -> list[Any]:
        return await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)), return_exceptions=True)

    return loop.run_until_complete(together())


def _trace(n: int) -> str:
    return f"{n:032x}"


def test_concurrent_invocations_share_one_worker_with_their_own_ctx_and_logs(env) -> None:
    _, runtime, sink = env
    started = time.monotonic()
    results = _run(env, *(("sleeper", {"name": f"n{i}", "ms": 400}, _trace(100 + i)) for i in range(8)))
    elapsed = time.monotonic() - started
    assert all(isinstance(r, dict) for r in results), results
    assert elapsed < 2.0  # eight 400 ms sleeps, side by side in one worker
    assert len({r["pid"] for r in results}) == 1 and runtime.pool("sleeper").size == 1
    assert max(r["concurrentAtStart"] for r in results) == 8  # module state is shared between them
    for i, result in enumerate(results):
        assert result["name"] == f"n{i}" and result["requestId"] == _trace(100 + i)
        mine = [log.message for log in sink.logs if log.trace_id == _trace(100 + i)]
        assert mine == [f"start n{i}", f"end n{i}"]  # ctx.log and console.log, each in its own trace


def test_a_sibling_timeout_fails_the_others_in_the_worker_with_worker_recycled(env) -> None:
    # The looping one starts first, so its timeout comes before the sibling's own (which the loop also blocks).
    looping, sibling = _run(env, ("runaway", {"loop": True}, _trace(201)), ("runaway", {"ms": 400}, _trace(200)),
                            stagger_s=0.02)
    assert isinstance(looping, FluxError) and (looping.status, looping.code) == (504, "function_timeout")
    assert isinstance(sibling, FluxError) and (sibling.status, sibling.code) == (503, "worker_recycled")
    assert "sibling invocation" in sibling.message and "timeout" in sibling.message
    assert sibling.headers.get("Retry-After") == "1"
    assert isinstance(_run(env, ("runaway", {"ms": 1}, _trace(202)))[0], dict)  # a fresh worker serves


def test_a_crash_fails_every_invocation_in_flight_with_runtime_crashed(env) -> None:
    results = _run(env, ("runaway", {"ms": 400}, _trace(300)), ("runaway", {"crash": True}, _trace(301)),
                   stagger_s=0.02)
    assert all(isinstance(r, FluxError) and (r.status, r.code) == (502, "runtime_crashed") for r in results), results
    assert isinstance(_run(env, ("runaway", {"ms": 1}, _trace(302)))[0], dict)


def test_post_return_work_retires_the_worker_and_its_siblings_finish(env) -> None:
    loop, _, sink = env
    before = _run(env, ("leaves_work", {}, _trace(400)))[0]
    old_pid = before["pid"]
    # A sibling is in flight while the lingering invocation's grace period runs out.
    sibling, lingering = _run(env, ("leaves_work", {"ms": 700}, _trace(401)),
                              ("leaves_work", {"linger": True}, _trace(402)), stagger_s=0.02)
    assert sibling == {"pid": old_pid} and lingering == {"pid": old_pid, "lingering": True}
    loop.run_until_complete(asyncio.sleep(0.1))
    after = _run(env, ("leaves_work", {}, _trace(403)))[0]
    assert after["pid"] != old_pid  # the retired worker took nobody new and was stopped once drained
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.killpg(old_pid, 0)
        except ProcessLookupError:
            break
        loop.run_until_complete(asyncio.sleep(0.05))
    else:
        pytest.fail("the retired worker is still running")
    spans = [s for s in sink.spans if s.trace_id == _trace(402)]
    assert any(s.name == "post-return work (worker recycled)" for s in spans)
    assert any("retired" in log.message for log in sink.logs if log.trace_id == _trace(402))


def test_stray_output_is_redacted_with_the_credentials_of_every_invocation_in_flight(env) -> None:
    """Raw stdout cannot be tied to one invocation, so it is kept with the oldest in flight: it must not carry a
    sibling's credential into that trace."""
    loop, _, sink = env

    def request(token: str) -> dict[str, Any]:
        return {"method": "POST", "path": "/prints", "route": "/prints", "params": {}, "query": {},
                "headers": {"authorization": f"Bearer {token}"}, "cookies": {}, "body": b""}

    async def both() -> list[Any]:
        calls = [("first", {"name": "a", "after": 400}, "tok-first-abcdef-123456", _trace(500)),
                 ("second", {"name": "b", "wait": 100}, "tok-second-ghijkl-789012", _trace(501))]

        async def one(i: int, name: str, payload: dict, token: str, trace: str) -> Any:
            await asyncio.sleep(i * 0.03)
            return await env[1].invoke("prints", payload, CallContext(trace, None, "", trace, sink,
                                                                      request=request(token)))

        return await asyncio.gather(*(one(i, *c) for i, c in enumerate(calls)))

    assert loop.run_until_complete(both()) == [{"ok": True}, {"ok": True}]
    stray = [log for log in sink.logs if log.trace_id in (_trace(500), _trace(501)) and log.message.startswith("raw")]
    assert {log.message for log in stray} == {"raw a: [redacted]", "raw b: [redacted]"}
    assert all(log.trace_id == _trace(500) for log in stray)  # the oldest invocation in flight keeps both
    assert next(log for log in stray if log.message.startswith("raw b")).fields["inflight"] == 2
