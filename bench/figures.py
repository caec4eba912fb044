"""The figures besides throughput: cold starts, query compile time, ``flux trace``, async jobs/s.

Compile time, ``flux trace`` and the worker cold start reuse the micro-benchmarks next to this
file (bench/engine_compile.py and bench/trace_cli.py as subprocesses, reading what they print;
bench/runtime_cold_warm.py imported);
async jobs go through ``flux dev`` when it answers an ``async`` function with 202, and
otherwise fall back to bench/queue_local.py (the queue with a no-op invoker), saying which.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import ManagedProcess
from bench.stacks import REPO, Tools, base_env, copy_flux_app, free_port, wait_ready


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def flux_dev_cold_start(tools: Tools, dsn: str, work: Path, runs: int) -> dict[str, Any]:
    """Spawn of ``flux dev`` → first 200 from GET /hello; with an empty ``.flux/`` and with a warm one."""
    fresh, warm = [], []
    for i in range(runs):
        project = copy_flux_app("flux", work / f"cold-{i}")
        for bucket in (fresh, warm):   # first start: empty Deno cache; second: the cache the first left
            port = free_port()
            env = {**base_env(), "DATABASE_URL": dsn}
            process = ManagedProcess([str(tools.flux), "dev", str(project), "--port", str(port), "--no-watch"],
                                     cwd=REPO, env=env, log_path=work / "cold.log").start()
            try:
                bucket.append(wait_ready(f"http://127.0.0.1:{port}/hello", process))
            finally:
                process.stop()
    return {"fresh_project_s": _median(fresh), "warm_cache_s": _median(warm), "runs": runs,
            "what": "spawn of `flux dev` (external Postgres) to the first 200 of GET /hello"}


def function_cold_start(runs: int) -> dict[str, Any]:
    """bench/runtime_cold_warm.py: one function's worker, spawn of its Deno process to its first answer."""
    from bench.runtime_cold_warm import measure

    cold, warm = asyncio.run(measure(runs, 20))
    return {"cold_ms": _median(cold), "warm_ms": _median(warm), "runs": runs,
            "what": "Runtime.invoke with no warm worker (spawn Deno, load the module, run) vs a warm one",
            "source": "bench/runtime_cold_warm.py"}


def compile_time(iterations: int) -> dict[str, Any]:
    """bench/engine_compile.py: JSON query → validated model → SQL, in µs per query."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "engine_compile.py"), "--iterations", str(iterations)],
                          capture_output=True, text=True, check=True, cwd=REPO)
    # engine_compile.py reports the typical select and an embedded one (since 3db7127); the figure is the select's
    result = json.loads(done.stdout)
    select, embed = result["select"], result["embed"]
    return {"total_median_us": select["total"]["median_us"], "total_p99_us": select["total"]["p99_us"],
            "parse_median_us": select["parse"]["median_us"], "compile_median_us": select["compile"]["median_us"],
            "render_median_us": select["render"]["median_us"], "embed_total_median_us": embed["total"]["median_us"],
            "iterations": iterations, "source": "bench/engine_compile.py"}


_TRACE_LINE = re.compile(r"^(assemble|in-process|subprocess)\s+median\s+([\d.]+) ms")


def trace_cli(runs: int) -> dict[str, Any]:
    """bench/trace_cli.py: ``flux trace --json`` on a 1,000-span trace."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "trace_cli.py"), "--spans", "1000",
                           "--runs", str(runs)], capture_output=True, text=True, check=True, cwd=REPO)
    figures = {}
    for line in done.stdout.splitlines():
        match = _TRACE_LINE.match(line.strip())
        if match:
            figures[match.group(1).replace("-", "_") + "_ms"] = float(match.group(2))
    if "subprocess_ms" not in figures:
        raise RuntimeError(f"bench/trace_cli.py printed no figures:\n{done.stdout}\n{done.stderr}")
    return {**figures, "spans": 1000, "runs": runs, "source": "bench/trace_cli.py"}


def async_jobs(tools: Tools, dsn: str, work: Path, jobs: int) -> dict[str, Any]:
    """Jobs/s through ``flux dev`` if it serves async functions, else the queue-only micro-benchmark."""
    project = copy_flux_app("flux_jobs", work / "jobs")
    port = free_port()
    env = {**base_env(), "DATABASE_URL": dsn}
    process = ManagedProcess([str(tools.flux), "dev", str(project), "--port", str(port), "--no-watch"],
                             cwd=REPO, env=env, log_path=work / "jobs.log").start()
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_listening(base, process)
        probe = httpx.post(f"{base}/job", json={"i": -1}, timeout=10)
        if probe.status_code == 202:
            result = asyncio.run(_drive_jobs(base, project / ".flux" / "queue.db", jobs))
            result["queue_only_jobs_per_s"] = queue_local(jobs)["jobs_per_s"]   # same queue, no-op invoker
            return result
        reason = f"flux dev answered {probe.status_code} to POST of an async function"
    finally:
        process.stop()
    return {**queue_local(jobs), "path": "bench/queue_local.py (queue + dispatcher, no-op invoker, no Deno)",
            "why_not_flux_dev": reason}


def _wait_listening(base: str, process: ManagedProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"flux dev (jobs app) exited:\n{process.log_tail()}")
        try:
            httpx.get(f"{base}/_flux/api/health", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("flux dev (jobs app) did not listen")


async def _drive_jobs(base: str, queue_db: Path, jobs: int, concurrency: int = 8) -> dict[str, Any]:
    from functions.queue_consumer.sqlite_queue import SqliteJobQueue

    queue = SqliteJobQueue(queue_db)
    try:
        await _wait_done(queue, 1, 30)   # the probe job
        start_done = queue.stats(["job"])["job"].done
        counter = iter(range(jobs))
        refused = 0

        async def sender(client: httpx.AsyncClient) -> None:
            nonlocal refused
            for i in counter:
                response = await client.post(f"{base}/job", json={"i": i})
                refused += response.status_code != 202

        t0 = time.perf_counter()
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(sender(client) for _ in range(concurrency)))
        enqueued_s = time.perf_counter() - t0
        await _wait_done(queue, start_done + jobs - refused, 120)
        drained_s = time.perf_counter() - t0
        stats = queue.stats(["job"])["job"]
    finally:
        queue.close()
    return {"jobs_per_s": round(jobs / drained_s, 1), "enqueue_requests_per_s": round(jobs / enqueued_s, 1),
            "jobs": jobs, "refused": refused, "failed": stats.failed, "dlq": stats.dlq,
            "path": "flux dev: POST to an async function (202), drained by the local dispatcher into Deno workers"}


async def _wait_done(queue: Any, target: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = queue.stats(["job"]).get("job")
        if stats is not None and stats.done + stats.dlq >= target:
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"async jobs not done within {timeout_s:.0f}s")


def queue_local(jobs: int) -> dict[str, Any]:
    """bench/queue_local.py's throughput part: SQLite queue + dispatcher (4 at a time) + a no-op invoker."""
    from bench.queue_local import make_project, throughput

    with tempfile.TemporaryDirectory() as tmp:
        enqueues, drained = asyncio.run(throughput(make_project(Path(tmp)), jobs, 4))
    return {"jobs_per_s": round(drained, 1), "enqueues_per_s": round(enqueues, 1), "jobs": jobs}


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="flux-bench-"))
