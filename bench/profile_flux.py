"""Where the time goes on the Flux request path: ``flux dev`` under py-spy while wrk drives one scenario.

    .venv/bin/python -m bench.profile_flux [--scenario select] [--seconds 20] [--no-tracing] [--rate 250]

``flux dev`` is started *by* py-spy (attaching to a running process is refused on these
machines), on the bench app, against the bench database, and driven with the same wrk
script as ``bench.run`` after a warm-up. py-spy samples every Python thread and leaves out
idle ones; samples of start-up (imports) are dropped. Printed (and written as JSON next to
the speedscope profile under bench/out/):

- CPU seconds per request of each process kind (Python gateway, Deno workers, Postgres);
- the share of busy samples per thread;
- busy samples by *layer*: the innermost Flux module on the stack (``functions/...``), or the
  library at the leaf when no Flux frame is on it (event loop, uvicorn/h11);
- the top functions by self time and by inclusive time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.database import BenchDatabase
from bench.figures import scratch_dir
from bench.loadgen import LoadSettings, run_wrk
from bench.procs import ManagedProcess, TreeSampler
from bench.setup_env import prepare
from bench.stacks import REPO, base_env, copy_flux_app, free_port, wait_ready

OUT = REPO / "bench" / "out"
STARTUP_MARKERS = ("_find_and_load", "_call_with_frames_removed", "_load_unlocked")
# Blocking waits, by (function, file) of the leaf frame. py-spy's own idle detection does not drop
# them on these machines, so they are taken out here (and counted apart as "waiting").
# On uvloop (flux dev since 3bae4de) the loop's epoll wait is C code under asyncio.Runner.run, with no
# Python frame of its own: a sample whose leaf is Runner.run is that wait *or* uvloop's own C work
# (socket and pipe I/O), which py-spy cannot tell apart without --native; it is counted as waiting.
WAITS = {("select", "selectors.py"), ("wait", "threading.py"), ("get", "queue.py"),
         ("_worker", "concurrent/futures/thread.py"), ("_wait_for_tstate_lock", "threading.py"),
         ("run", "asyncio/runners.py")}


def is_wait(frame: dict[str, Any]) -> bool:
    name = str(frame.get("name") or "").rsplit(".", 1)[-1]
    file = str(frame.get("file") or "")
    return any(name == n and file.endswith(f) for n, f in WAITS)


def frame_key(frame: dict[str, Any]) -> str:
    file = frame.get("file") or "?"
    short = _short_path(file)
    return f"{frame.get('name', '?')} ({short}:{frame.get('line', '?')})"


def _short_path(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


# Flux frames at the root of every main-thread stack (the command that runs the loop): skipped when
# looking for the innermost Flux module, or every sample of the loop would be charged to them.
ENTRY_FRAMES = {("cli/main.py", "main"), ("cli/commands/local.py", "dev"), ("bench/whatif.py", "serve_main")}


def layer_of(stack: list[dict[str, Any]]) -> str:
    """The innermost Flux module on the stack (leaf first, entry frames skipped), else the leaf's library."""
    for frame in reversed(stack):
        short = _short_path(frame.get("file") or "")
        if (short, str(frame.get("name") or "")) in ENTRY_FRAMES:
            continue
        if short.startswith(("functions/", "cli/")):
            return short.rsplit(".py", 1)[0].replace("/", ".")
    leaf = _short_path(stack[-1].get("file") or "?") if stack else "?"
    return leaf.split("/", 1)[0].removesuffix(".py") + " (no Flux frame)"


def analyse(profile_path: Path) -> dict[str, Any]:
    data = json.loads(profile_path.read_text())
    frames = data["shared"]["frames"]
    threads: dict[str, int] = {}
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    busy = waiting = 0
    for profile in data["profiles"]:
        count = 0
        for sample, weight in zip(profile["samples"], profile["weights"], strict=True):
            # speedscope "sampled": frame indices root first; py-spy's weights are sample counts
            stack = [frames[i] for i in sample]
            if not stack:
                continue
            names = {f.get("name") for f in stack}
            if names & set(STARTUP_MARKERS):
                continue
            w = int(weight) or 1
            if is_wait(stack[-1]):
                waiting += w
                continue
            count += w
            self_time[frame_key(stack[-1])] += w
            for key in {frame_key(f) for f in stack}:
                inclusive[key] += w
            layers[layer_of(stack)] += w
        if count:
            threads[profile["name"]] = count
        busy += count
    def pct(counter: collections.Counter[str], n: int) -> list[dict[str, Any]]:
        return [{"what": k, "pct": round(100 * v / busy, 1), "samples": v} for k, v in counter.most_common(n)]

    return {"busy_samples": busy, "waiting_samples": waiting, "threads": [{"thread": k, "pct": round(100 * v / busy, 1)}
                                              for k, v in sorted(threads.items(), key=lambda kv: -kv[1])],
            "layers": pct(layers, 25), "self": pct(self_time, 30), "inclusive": pct(inclusive, 40)}


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_flux", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="select", choices=["hello", "insert", "select", "real"])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-tracing", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    tools = prepare()
    pyspy = tools.bench_bin / "py-spy"
    db, work = BenchDatabase(), scratch_dir()
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    tag = f"{args.scenario}{'-notrace' if args.no_tracing else ''}"
    speedscope = OUT / f"profile-{stamp}-{tag}.speedscope.json"
    process: ManagedProcess | None = None
    try:
        dsn = db.start()
        pg = TreeSampler([db.postmaster_pid() or 0]).start()
        project = copy_flux_app("flux", work)
        port = free_port()
        flux = [str(tools.flux), "dev", str(project), "--port", str(port), "--no-watch"]
        if args.no_tracing:
            flux.append("--no-tracing")
        argv_ = [str(pyspy), "record", "--rate", str(args.rate), "--nonblocking",
                 "--format", "speedscope", "--output", str(speedscope), "--", *flux]
        process = ManagedProcess(argv_, cwd=REPO, env={**base_env(), "DATABASE_URL": dsn},
                                 log_path=work / "profile.log").start()
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/hello", process)
        load = LoadSettings(threads=1, connections=args.connections, duration_s=args.seconds, warmup_s=3)
        run_wrk(base, args.scenario, load, duration_s=load.warmup_s)
        db.reset()
        assert process.sampler is not None
        mark, pg_mark = process.sampler.mark(), pg.mark()
        result = run_wrk(base, args.scenario, load)
        cpu, pg_cpu = process.sampler.cpu_since(mark), pg.cpu_since(pg_mark)
        pg.stop()
        # SIGINT to the group: flux dev shuts down, py-spy writes the profile when its child exits.
        os.killpg(process.pid, signal.SIGINT)
        assert process.proc is not None
        process.proc.wait(timeout=60)
    finally:
        if process is not None:
            process.stop()
        db.stop()
        log = (work / "profile.log").read_text(errors="replace") if (work / "profile.log").exists() else ""
        shutil.rmtree(work, ignore_errors=True)
    if not speedscope.exists():
        print(log[-3000:])
        return 1
    per_req = 1000 / max(result.requests, 1)
    cpu.pop("py-spy", None)
    report = {"scenario": args.scenario, "tracing": not args.no_tracing, "seconds": args.seconds,
              "rps": result.rps, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
              "note": "py-spy samples from outside (--nonblocking); figures under it are a little below bench.run's",
              "cpu_ms_per_req": {**{k: round(v * per_req, 3) for k, v in cpu.items()},
                                 "postgres": round(sum(pg_cpu.values()) * per_req, 3)},
              "speedscope": str(speedscope.relative_to(REPO)), **analyse(speedscope)}
    path = OUT / f"profile-{stamp}-{tag}.json"
    path.write_text(json.dumps(report, indent=2))
    print_report(report)
    print(f"\nwrote {path.relative_to(REPO)} (open {report['speedscope']} in speedscope.app for the flame graph)")
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(f"flux dev, {report['scenario']}, tracing {'on' if report['tracing'] else 'off'}: "
          f"{report['rps']:,.0f} req/s, p50 {report['p50_ms']:.2f} ms, p99 {report['p99_ms']:.2f} ms")
    print("CPU ms per request: " + ", ".join(f"{k} {v}" for k, v in report["cpu_ms_per_req"].items()))
    print("\nthreads (share of busy samples):")
    for t in report["threads"]:
        print(f"  {t['pct']:5.1f} %  {t['thread']}")
    for title, key in (("layers (innermost Flux module on the stack)", "layers"), ("self time", "self"),
                       ("inclusive time", "inclusive")):
        print(f"\n{title}:")
        for row in report[key]:
            print(f"  {row['pct']:5.1f} %  {row['what']}")


if __name__ == "__main__":
    sys.exit(main())
