"""Local queue benchmark: SqliteJobQueue + LocalDispatcher + EnqueueService with a FAKE invoker.

The invoker does no work (it records when a job started and returns), so the figures are the
queue's own cost: enqueue (one SQLite transaction), the dispatcher's poll/wake, receive, and
ack. Real functions add the Deno worker's time on top; measure that with the real runtime.

    .venv/bin/python bench/queue_local.py [--latency-jobs 300] [--throughput-jobs 3000] [--concurrency 4]

Figures:
- enqueue → start latency (median, p99): one job at a time into an idle dispatcher, from the
  moment ``push`` is called to the moment the invoker is entered; with
  ``on_enqueued=dispatcher.wake`` as ``flux dev`` wires it, and again with polling only
  (50 ms poll interval, pushes at random phases of the tick);
- jobs/s: N jobs enqueued up front, then drained by the dispatcher (start → last ack);
- enqueues/s: ``push`` calls one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from functions.queue_consumer.local_dispatcher import LocalDispatcher
from functions.queue_consumer.service import EnqueueService
from functions.queue_consumer.sqlite_queue import SqliteJobQueue
from functions.shared.context import CallContext
from functions.shared.manifest import Project, load_project
from functions.shared.spans import NullSink

TRACE = "ef" * 16


class FakeInvoker:
    """Records the start time of each job and returns at once (no Deno, no user code)."""

    def __init__(self) -> None:
        self.started: dict[Any, float] = {}
        self.event = asyncio.Event()
        self.expected = 0

    async def invoke(self, function: str, payload: Any, call: CallContext, *,
                     span_attrs: dict[str, Any] | None = None) -> Any:
        self.started[payload["i"]] = time.perf_counter()
        if len(self.started) >= self.expected:
            self.event.set()
        return None


def make_project(root: Path) -> Project:
    (root / "functions" / "noop").mkdir(parents=True)
    (root / "flux.json").write_text(json.dumps({"name": "bench"}))
    (root / "functions" / "noop" / "index.ts").write_text("export default async function handler() {}\n")
    (root / "functions" / "noop" / "flux.json").write_text(json.dumps({"async": True}))
    return load_project(root)


def call() -> CallContext:
    return CallContext(TRACE, "00000000000000bb", function="bench", request_id=TRACE, sink=NullSink())


async def latency(project: Project, jobs: int, *, wake: bool) -> list[float]:
    queue = SqliteJobQueue(project.root / ".flux" / f"latency-{wake}.db")
    invoker = FakeInvoker()
    dispatcher = LocalDispatcher(queue, invoker, project, NullSink(), poll_interval_s=0.05)
    service = EnqueueService(queue, project, on_enqueued=dispatcher.wake if wake else None)
    await dispatcher.start()
    samples = []
    rng = random.Random(1)
    for i in range(jobs):
        invoker.event.clear()
        invoker.expected = i + 1
        t0 = time.perf_counter()
        await service.push("noop", {"i": i}, {}, call())
        await invoker.event.wait()
        samples.append((invoker.started[i] - t0) * 1000)
        while dispatcher.in_flight:  # noqa: ASYNC110 - wait for an idle dispatcher, as when a request arrives
            await asyncio.sleep(0.001)
        await asyncio.sleep(rng.uniform(0, 0.05))  # no phase lock with the 50 ms poll tick
    await dispatcher.stop()
    queue.close()
    return samples


async def throughput(project: Project, jobs: int, concurrency: int) -> tuple[float, float]:
    queue = SqliteJobQueue(project.root / ".flux" / "throughput.db")
    invoker = FakeInvoker()
    invoker.expected = jobs
    service = EnqueueService(queue, project)
    t0 = time.perf_counter()
    for i in range(jobs):
        await service.push("noop", {"i": i}, {}, call())
    enqueue_s = time.perf_counter() - t0
    dispatcher = LocalDispatcher(queue, invoker, project, NullSink(), poll_interval_s=0.05, concurrency=concurrency)
    t1 = time.perf_counter()
    await dispatcher.start()
    await invoker.event.wait()  # the last job has started
    await dispatcher.stop()  # graceful: waits for the running jobs' acks
    drain_s = time.perf_counter() - t1
    assert queue.stats()["noop"].done == jobs
    queue.close()
    return jobs / enqueue_s, jobs / drain_s


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        woken = await latency(project, args.latency_jobs, wake=True)
        polled = await latency(project, min(args.latency_jobs, 100), wake=False)
        enqueues, drained = await throughput(project, args.throughput_jobs, args.concurrency)
    return {
        "invoker": "fake (no Deno, returns at once)",
        "latency_ms_wake": {"median": round(statistics.median(woken), 3), "p99": round(pct(woken, 0.99), 3),
                            "n": len(woken)},
        "latency_ms_poll_only_50ms": {"median": round(statistics.median(polled), 3),
                                      "p99": round(pct(polled, 0.99), 3), "n": len(polled)},
        "jobs_per_s": round(drained, 1),
        "enqueues_per_s": round(enqueues, 1),
        "throughput_jobs": args.throughput_jobs,
        "concurrency": args.concurrency,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-jobs", type=int, default=300)
    parser.add_argument("--throughput-jobs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
