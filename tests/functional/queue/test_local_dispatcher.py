"""LocalDispatcher + SqliteJobQueue + EnqueueService with a fake invoker: retries, DLQ, restarts, traces."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from queue_support import write_project

from functions.queue_consumer.local_dispatcher import LocalDispatcher
from functions.queue_consumer.service import EnqueueService
from functions.queue_consumer.sqlite_queue import SqliteJobQueue
from functions.shared.context import CallContext
from functions.shared.errors import FunctionError
from functions.shared.manifest import Project, load_project
from functions.shared.spans import MemorySink

TRACE = "cd" * 16


class Highest:
    def uniform(self, a: float, b: float) -> float:
        return b


class FakeInvoker:
    """Fails a job while ``payload["fail_times"]`` attempts of it have not failed yet; sleeps ``payload["sleep"]``."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, float, CallContext]] = []
        self.successes: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    async def invoke(self, function: str, payload: Any, call: CallContext, *,
                     span_attrs: dict[str, Any] | None = None) -> Any:
        key = str(payload["key"])
        self.starts.append((key, time.monotonic(), call))
        await asyncio.sleep(payload.get("sleep", 0))
        if self.failures[key] < payload.get("fail_times", 0):
            self.failures[key] += 1
            raise FunctionError(f"attempt failed for {key}")
        self.successes[key] += 1
        return {"ok": key}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return load_project(write_project(tmp_path / "app", {
        "create_order": {"route": "/orders"},
        "send_invoice": {"async": True, "retry": {"max_attempts": 3, "backoff": "exponential", "base_ms": 40}},
        "always_fails": {"async": True, "retry": {"max_attempts": 2, "base_ms": 10}},
    }))


def queue_of(project: Project) -> SqliteJobQueue:
    return SqliteJobQueue(project.root / ".flux" / "queue.db",
                          max_attempts={n: s.config.retry.max_attempts for n, s in project.functions.items()})


async def enqueue(service: EnqueueService, function: str, payload: Any, sink: MemorySink,
                  options: dict[str, Any] | None = None) -> str:
    call = CallContext(TRACE, "00000000000000aa", function="create_order", request_id=TRACE, sink=sink)
    return (await service.push(function, payload, options or {}, call))["job_id"]


async def wait_until(predicate: Any, limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_a_job_runs_in_the_trace_of_its_enqueue(project: Project) -> None:
    queue, invoker, sink = queue_of(project), FakeInvoker(), MemorySink()

    async def scenario() -> str:
        dispatcher = LocalDispatcher(queue, invoker, project, sink, poll_interval_s=0.02)
        service = EnqueueService(queue, project, on_enqueued=dispatcher.wake)
        await dispatcher.start()
        job_id = await enqueue(service, "send_invoice", {"key": "a"}, sink)
        await wait_until(lambda: invoker.successes["a"] == 1)
        await dispatcher.stop()
        return job_id

    job_id = asyncio.run(scenario())
    enqueue_span = next(s for s in sink.spans if s.name == "enqueue send_invoice")
    attempt = next(s for s in sink.spans if s.name == "async → send_invoice")
    assert enqueue_span.parent_span_id == "00000000000000aa" and enqueue_span.trace_id == TRACE
    assert (attempt.trace_id, attempt.parent_span_id) == (TRACE, enqueue_span.span_id)
    assert attempt.attrs["job_id"] == job_id and attempt.attrs["attempt"] == 1 and attempt.attrs["outcome"] == "ok"
    assert attempt.attrs["queue_wait_ms"] >= 0
    (_key, _t, call) = invoker.starts[0]
    assert (call.trace_id, call.parent_span_id, call.function) == (TRACE, attempt.span_id, "send_invoice")
    assert queue.stats()["send_invoice"].done == 1


def test_failed_attempts_are_retried_with_backoff(project: Project) -> None:
    queue, invoker, sink = queue_of(project), FakeInvoker(), MemorySink()

    async def scenario() -> None:
        dispatcher = LocalDispatcher(queue, invoker, project, sink, poll_interval_s=0.005, rng=Highest())
        await dispatcher.start()
        await enqueue(EnqueueService(queue, project), "send_invoice", {"key": "b", "fail_times": 2}, sink)
        await wait_until(lambda: invoker.successes["b"] == 1)
        await dispatcher.stop()

    asyncio.run(scenario())
    times = [t for key, t, _ in invoker.starts if key == "b"]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.040 and times[2] - times[1] >= 0.080  # 40 ms, then 80 ms
    attempts = sorted((s for s in sink.spans if s.kind == "queue" and s.name.startswith("async")),
                      key=lambda s: s.attrs["attempt"])
    assert [(s.attrs["attempt"], s.attrs["outcome"]) for s in attempts] == [(1, "retry"), (2, "retry"), (3, "ok")]
    assert len({s.parent_span_id for s in attempts}) == 1  # every attempt hangs under the one enqueue span
    assert queue.stats()["send_invoice"].failed == 2


def test_a_job_that_always_fails_lands_in_the_dlq_with_its_last_error(project: Project) -> None:
    queue, invoker, sink = queue_of(project), FakeInvoker(), MemorySink()

    async def scenario() -> str:
        dispatcher = LocalDispatcher(queue, invoker, project, sink, poll_interval_s=0.005)
        await dispatcher.start()
        job_id = await enqueue(EnqueueService(queue, project), "always_fails", {"key": "c", "fail_times": 99}, sink)
        await wait_until(lambda: bool(queue.dlq_list()))
        await dispatcher.stop()
        return job_id

    job_id = asyncio.run(scenario())
    (entry,) = queue.dlq_list()
    assert (entry.id, entry.function, entry.attempts, entry.trace_id) == (job_id, "always_fails", 2, TRACE)
    assert entry.last_error == "function_error: attempt failed for c"
    outcomes = [s.attrs["outcome"] for s in sink.spans if s.name == "async → always_fails"]
    assert sorted(outcomes) == ["dead", "retry"]


def test_jobs_pending_at_stop_run_exactly_once_after_a_restart(project: Project) -> None:
    path = project.root / ".flux" / "queue.db"
    invoker, sink = FakeInvoker(), MemorySink()
    keys = [f"k{i}" for i in range(12)]

    async def first_run() -> None:
        queue = queue_of(project)
        dispatcher = LocalDispatcher(queue, invoker, project, sink, poll_interval_s=0.005, concurrency=2)
        service = EnqueueService(queue, project, on_enqueued=dispatcher.wake)
        for key in keys:
            await enqueue(service, "send_invoice", {"key": key, "sleep": 0.03}, sink)
        await dispatcher.start()
        await wait_until(lambda: sum(invoker.successes.values()) >= 2)
        await dispatcher.stop(grace_s=0)  # running jobs are interrupted and released
        queue.close()

    asyncio.run(first_run())
    finished_before = sum(invoker.successes.values())
    assert finished_before < len(keys)

    async def second_run() -> None:
        queue = SqliteJobQueue(path)
        dispatcher = LocalDispatcher(queue, invoker, project, sink, poll_interval_s=0.005, concurrency=4)
        await dispatcher.start()
        await wait_until(lambda: sum(invoker.successes.values()) == len(keys))
        await asyncio.sleep(0.1)  # room for a wrong second run to show up
        await dispatcher.stop()
        assert queue.stats()["send_invoice"].to_dict() == \
            {"pending": 0, "in_flight": 0, "done": len(keys), "failed": 0, "dlq": 0}

    asyncio.run(second_run())
    assert invoker.successes == Counter(dict.fromkeys(keys, 1))


def test_jobs_in_flight_when_the_process_died_run_at_the_next_start(project: Project) -> None:
    path = project.root / ".flux" / "queue.db"
    crashed = queue_of(project)
    sink, invoker = MemorySink(), FakeInvoker()

    async def scenario() -> None:
        service = EnqueueService(crashed, project)
        for key in ("x", "y"):
            await enqueue(service, "send_invoice", {"key": key}, sink)
        assert len(crashed.receive(max_messages=10, visibility_timeout_s=600)) == 2  # taken, never settled
        crashed.close()  # the owner is gone, as after kill -9
        queue = SqliteJobQueue(path)
        dispatcher = LocalDispatcher(queue, invoker, project, sink, poll_interval_s=0.005)
        await dispatcher.start()
        await wait_until(lambda: sum(invoker.successes.values()) == 2, limit_s=3)  # long before 600 s
        await dispatcher.stop()

    asyncio.run(scenario())
    assert invoker.successes == Counter({"x": 1, "y": 1})
    attempts = [s.attrs["attempt"] for s in sink.spans if s.name.startswith("async")]
    assert attempts == [2, 2]  # the interrupted delivery counted, as on SQS


def test_a_graceful_stop_lets_running_jobs_finish(project: Project) -> None:
    queue, invoker, sink = queue_of(project), FakeInvoker(), MemorySink()

    async def scenario() -> None:
        dispatcher = LocalDispatcher(queue, invoker, project, sink, poll_interval_s=0.005)
        await dispatcher.start()
        await enqueue(EnqueueService(queue, project, on_enqueued=dispatcher.wake), "send_invoice",
                      {"key": "slow", "sleep": 0.2}, sink)
        await wait_until(lambda: len(invoker.starts) == 1)
        await dispatcher.stop()
        assert not dispatcher.running

    asyncio.run(scenario())
    assert invoker.successes["slow"] == 1
    assert queue.stats()["send_invoice"].done == 1



def test_an_idle_dispatcher_sleeps_until_the_next_job_is_due_not_every_poll_interval(project: Project) -> None:
    queue, invoker, sink = queue_of(project), FakeInvoker(), MemorySink()
    assert queue.next_visible_in_s() is None  # nothing queued: the dispatcher looks once per idle_poll_s
    receives = 0
    original = queue.receive

    def counting(**kwargs: Any) -> Any:
        nonlocal receives
        receives += 1
        return original(**kwargs)

    async def scenario() -> float:
        # No on_enqueued wake-up: the dispatcher must find the delayed job from its due time alone.
        await enqueue(EnqueueService(queue, project), "send_invoice", {"key": "late"}, sink, {"delay_s": 0.4})
        due = queue.next_visible_in_s()
        assert due is not None and 0.2 < due <= 0.4
        queue.receive = counting  # type: ignore[method-assign]
        dispatcher = LocalDispatcher(queue, invoker, project, sink, poll_interval_s=0.005, idle_poll_s=5)
        started = time.monotonic()
        await dispatcher.start()
        await wait_until(lambda: invoker.successes["late"] == 1)
        ran_after = time.monotonic() - started
        await dispatcher.stop()
        return ran_after

    ran_after = asyncio.run(scenario())
    assert 0.2 < ran_after < 1.5  # it ran when due, though idle_poll_s is 5 s
    assert receives <= 4  # not one receive per 5 ms poll interval (about 80 before it came due)


def test_a_job_from_the_sqlite_queue_is_not_asked_is_done_again(project: Project) -> None:
    """receive() leases only jobs still queued, so the runner skips is_done (one thread hop per job)."""
    queue, invoker, sink = queue_of(project), FakeInvoker(), MemorySink()
    asked: list[str] = []
    original = queue.is_done

    def counting(job_id: str) -> bool:
        asked.append(job_id)
        return original(job_id)

    queue.is_done = counting  # type: ignore[method-assign]

    async def scenario() -> None:
        dispatcher = LocalDispatcher(queue, invoker, project, sink, poll_interval_s=0.005)
        service = EnqueueService(queue, project, on_enqueued=dispatcher.wake)
        await dispatcher.start()
        await enqueue(service, "send_invoice", {"key": "once"}, sink)
        await wait_until(lambda: invoker.successes["once"] == 1)
        await dispatcher.stop()

    asyncio.run(scenario())
    assert asked == [] and queue.stats()["send_invoice"].done == 1
