"""flux dev's memory and Deno worker count over time: under load, then idle; and a 30-function project.

    .venv/bin/python -m bench.pool_memory [--load-s 10] [--idle-s 60] [--functions 30] [--interval-s 1]
    .venv/bin/python -m bench.pool_memory --sweep [--load-s 10] [--connections 16,64] [--scenarios hello,select]

Two runs of ``flux dev`` against the bench Postgres, each sampled from /proc every ``--interval-s``
(RSS of the whole process tree, gateway + Deno workers, and how many Deno processes it has):

1. the bench app: hello, insert and select driven by wrk (16 connections, ``--load-s`` each), then
   ``--idle-s`` of nothing. Gives the peak RSS and worker count under load and what is left idle;
2. a generated project of ``--functions`` functions, each called once, then ``--idle-s`` idle.

Why: worker pools that grow with demand and retire idle workers (functions/runtime/pool.py
``PoolPolicy``) are judged by these curves (issue #16: <= 250 MB peak, <= 150 MB after 60 s idle,
<= 300 MB for 30 functions served once). Prints markdown and the timelines as JSON lines.

``--sweep`` instead runs one ``flux dev`` on the bench app and drives each scenario with wrk at each
connection count for ``--load-s``: req/s, p99, peak tree RSS, peak Deno processes and the CPU the
whole tree used per request (from /proc), the figures by which a change to the workers is judged
(issue #16: peak RSS down, CPU per request down, under 16 and 64 connections).
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.database import BenchDatabase
from bench.figures import scratch_dir
from bench.loadgen import LoadSettings, run_wrk
from bench.procs import ManagedProcess, TreeSampler, all_stats, tree
from bench.setup_env import prepare
from bench.stacks import REPO, base_env, copy_flux_app, free_port, wait_ready


@dataclass
class Timeline:
    """(seconds since start, tree RSS in MB, Deno processes, phase) every ``interval_s``, from a thread."""

    root: int
    interval_s: float
    points: list[tuple[float, float, int, str]] = field(default_factory=list)
    phase: str = "start"
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Timeline:
        started = time.monotonic()

        def run() -> None:
            while not self._stop.wait(self.interval_s):
                members = tree(all_stats(), [self.root])
                rss = sum(m.rss_bytes for m in members) / 2**20
                deno = sum(1 for m in members if m.name == "deno")
                self.points.append((round(time.monotonic() - started, 1), round(rss, 1), deno, self.phase))

        threading.Thread(target=run, name="timeline", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def peak(self, phase: str) -> tuple[float, int]:
        rows = [p for p in self.points if p[3] == phase] or [(0.0, 0.0, 0, phase)]
        return max(r[1] for r in rows), max(r[2] for r in rows)

    def last(self) -> tuple[float, float, int, str]:
        return self.points[-1] if self.points else (0.0, 0.0, 0, "")


def _start_flux(tools, project: Path, dsn: str, work: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    process = ManagedProcess([str(tools.flux), "dev", str(project), "--port", str(port), "--no-watch"], cwd=REPO,
                             env={**base_env(), "DATABASE_URL": dsn}, log_path=work / "pool_memory.log").start()
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/hello", process)
    return process, base


def bench_app(tools, db: BenchDatabase, work: Path, load_s: float, idle_s: float, interval_s: float) -> Timeline:
    process, base = _start_flux(tools, copy_flux_app("flux", work), db.dsn, work)
    timeline = Timeline(process.pid, interval_s).start()
    try:
        load = LoadSettings(threads=1, connections=16, duration_s=load_s, warmup_s=0)
        for scenario in ("hello", "insert", "select"):
            timeline.phase = f"load:{scenario}"
            db.reset()
            run_wrk(base, scenario, load)
        timeline.phase = "idle"
        time.sleep(idle_s)
    finally:
        timeline.stop()
        process.stop()
    return timeline


def many_functions(tools, db: BenchDatabase, work: Path, count: int, idle_s: float, interval_s: float) -> Timeline:
    project = work / "many"
    shutil.rmtree(project, ignore_errors=True)
    (project / "functions").mkdir(parents=True)
    (project / "flux.json").write_text(json.dumps({"name": "many", "auth": {"default": "none"}}))
    names = ["hello", *(f"f{i:02d}" for i in range(1, count))]
    for name in names:
        folder = project / "functions" / name
        folder.mkdir()
        (folder / "index.ts").write_text(f'export default async function handler() {{ return {{ fn: "{name}" }}; }}\n')
        (folder / "flux.json").write_text(json.dumps({"route": f"/{name}", "method": "GET"}))
    process, base = _start_flux(tools, project, db.dsn, work)
    timeline = Timeline(process.pid, interval_s).start()
    try:
        timeline.phase = "calls"
        with httpx.Client(timeout=30) as client:
            for name in names:
                client.get(f"{base}/{name}").raise_for_status()
        timeline.phase = "idle"
        time.sleep(idle_s)
    finally:
        timeline.stop()
        process.stop()
    return timeline


@dataclass(frozen=True)
class SweepRow:
    scenario: str
    connections: int
    rps: float
    p99_ms: float
    non_2xx: int
    peak_rss_mb: float
    peak_deno: int
    cpu_us_per_request: float
    deno_cpu_us_per_request: float


def sweep(tools, db: BenchDatabase, work: Path, scenarios: list[str], connections: list[int],
          load_s: float) -> list[SweepRow]:
    """Each scenario at each connection count against one flux dev: throughput, memory, Deno processes and
    CPU per request of the whole process tree (gateway and workers), each run measured on its own."""
    process, base = _start_flux(tools, copy_flux_app("flux", work), db.dsn, work)
    rows: list[SweepRow] = []
    try:
        for scenario in scenarios:
            for count in connections:
                db.reset()
                deno = Timeline(process.pid, 0.25).start()
                sampler = TreeSampler([process.pid], interval_s=0.25).start()
                mark = sampler.mark()
                result = run_wrk(base, scenario, LoadSettings(threads=2, connections=count, duration_s=load_s,
                                                              warmup_s=0))
                by_name = sampler.cpu_since(mark)
                cpu_s, per = sum(by_name.values()), 1e6 / max(result.requests, 1)
                sampler.stop()
                deno.stop()
                rows.append(SweepRow(scenario, count, round(result.rps), result.p99_ms, result.non_2xx,
                                     round(sampler.sample.peak_rss_bytes / 2**20, 1), deno.peak("start")[1],
                                     round(cpu_s * per, 1), round(by_name.get("deno", 0.0) * per, 1)))
    finally:
        process.stop()
    return rows


def _at(timeline: Timeline, seconds_into_idle: float) -> tuple[float, int]:
    idle = [p for p in timeline.points if p[3] == "idle"]
    if not idle:
        return 0.0, 0
    start = idle[0][0]
    point = min(idle, key=lambda p: abs(p[0] - start - seconds_into_idle))
    return point[1], point[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pool_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--load-s", type=float, default=10)
    parser.add_argument("--idle-s", type=float, default=60)
    parser.add_argument("--functions", type=int, default=30)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--sweep", action="store_true", help="wrk at each --connections count instead")
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--scenarios", default="hello,select")
    args = parser.parse_args(argv)
    tools, db, work = prepare(), BenchDatabase(), scratch_dir()
    if args.sweep:
        try:
            db.start()
            rows = sweep(tools, db, work, args.scenarios.split(","), [int(c) for c in args.connections.split(",")],
                         args.load_s)
        finally:
            db.stop()
            shutil.rmtree(work, ignore_errors=True)
        print("\n| scenario | connections | req/s | p99 ms | non-2xx | peak RSS MB | peak Deno | CPU us/req | "
              "of which Deno |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            print(f"| {row.scenario} | {row.connections} | {row.rps:.0f} | {row.p99_ms:.1f} | {row.non_2xx} | "
                  f"{row.peak_rss_mb:.0f} | {row.peak_deno} | {row.cpu_us_per_request:.0f} | "
                  f"{row.deno_cpu_us_per_request:.0f} |")
        return 0
    try:
        db.start()
        app = bench_app(tools, db, work, args.load_s, args.idle_s, args.interval_s)
        many = many_functions(tools, db, work, args.functions, args.idle_s, args.interval_s)
    finally:
        db.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n| run | phase | peak RSS MB | peak Deno workers |\n|---|---|---:|---:|")
    for label, timeline in (("bench app", app), (f"{args.functions} functions", many)):
        for phase in dict.fromkeys(p[3] for p in timeline.points):
            rss, deno = timeline.peak(phase)
            print(f"| {label} | {phase} | {rss:.0f} | {deno} |")
    print("\n| run | idle 5 s: RSS MB / workers | idle 30 s | idle 60 s (end) |\n|---|---:|---:|---:|")
    for label, timeline in (("bench app", app), (f"{args.functions} functions", many)):
        cells = [f"{rss:.0f} / {deno}" for rss, deno in (_at(timeline, s) for s in (5, 30, args.idle_s))]
        print(f"| {label} | " + " | ".join(cells) + " |")
    for label, timeline in (("bench app", app), ("functions", many)):
        print(json.dumps({"run": label, "points": timeline.points}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
