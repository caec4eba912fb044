"""Where the gateway's CPU goes per request: cProfile on its event-loop thread, timed in thread CPU time.

    .venv/bin/python -m bench.profile_cpu [--scenario hello] [--seconds 10] [--connections 16] [--no-tracing]

``bench.profile_flux`` samples wall time with py-spy, so on a busy 2-core machine a thread that
is runnable but not running looks busy (bench/PROFILE.md section 5). This one runs ``flux dev``
on the bench app with :mod:`cProfile` enabled on the event-loop thread and ``time.thread_time``
as its clock: only CPU the gateway's main thread spent is counted, so the figures are CPU
microseconds per request, comparable with bench.run's /proc CPU (cProfile itself adds about
1 µs per Python call, so totals are inflated; the *shares* are what to read). The span writer
thread is not profiled; its CPU is read from /proc and printed apart.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import signal
import sys
import time
from pathlib import Path

STATS_ENV = "FLUX_BENCH_CPROFILE_OUT"


def serve_main(argv: list[str]) -> int:
    """The launcher: ``flux dev`` under cProfile (main thread, thread CPU clock); stats dumped at exit."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_cpu serve")
    parser.add_argument("project", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-tracing", action="store_true")
    args = parser.parse_args(argv)
    from cli.commands.local import _line
    from functions.local import devserver

    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    try:
        return devserver.run(args.project.resolve(), port=args.port, watch=False,
                             tracing=False if args.no_tracing else None, out=_line)
    finally:
        profiler.disable()
        profiler.dump_stats(os.environ[STATS_ENV])


def measure_main(argv: list[str]) -> int:
    from bench.database import BenchDatabase
    from bench.figures import scratch_dir
    from bench.loadgen import SCENARIOS, LoadSettings, run_wrk
    from bench.procs import ManagedProcess, thread_cpu_s
    from bench.setup_env import prepare
    from bench.stacks import REPO, base_env, copy_flux_app, free_port, wait_ready

    parser = argparse.ArgumentParser(prog="python -m bench.profile_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="hello", choices=SCENARIOS)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-tracing", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    prepare()
    db, work = BenchDatabase(), scratch_dir()
    stats_path = work / "gateway.prof"
    load = LoadSettings(threads=1, connections=args.connections, duration_s=args.seconds, warmup_s=2)
    process: ManagedProcess | None = None
    try:
        dsn = db.start()
        project = copy_flux_app("flux", work)
        port = free_port()
        command = [sys.executable, "-m", "bench.profile_cpu", "serve", str(project), "--port", str(port)]
        if args.no_tracing:
            command.append("--no-tracing")
        env = {**base_env(), "DATABASE_URL": dsn, STATS_ENV: str(stats_path)}
        process = ManagedProcess(command, cwd=REPO, env=env, log_path=work / "serve.log").start()
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/hello", process)
        run_wrk(base, args.scenario, load, duration_s=load.warmup_s)
        threads_before = thread_cpu_s(process.pid)
        result = run_wrk(base, args.scenario, load)
        threads_after = thread_cpu_s(process.pid)
        process.stop()
        process = None
        print(f"{args.scenario}: {result.rps:,.0f} req/s, {result.requests} requests "
              f"(the profile also holds start-up and warm-up)")
        for name, after, before in zip(("event loop (main)", "other threads"), threads_after, threads_before,
                                       strict=True):
            print(f"  {name:<18} {(after - before) / result.requests * 1e6:8.1f} CPU µs/request (from /proc)")
        (REPO / "bench" / "out").mkdir(exist_ok=True)  # kept for snakeviz / pstats (bench/out is ignored)
        shutil.copy(stats_path, REPO / "bench" / "out" / f"gateway-{args.scenario}.prof")
        stats = pstats.Stats(str(stats_path))
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    finally:
        if process is not None:
            process.stop()
        db.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(serve_main(sys.argv[2:]))
    sys.exit(measure_main(sys.argv[1:]))
