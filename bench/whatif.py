"""What a proposed change to ``flux dev`` would gain, measured before anyone edits Flux.

    .venv/bin/python -m bench.whatif [--seconds 8] [--rounds 2] [--scenarios hello,insert,select]

Runs ``flux dev`` on the bench app through a launcher (``python -m bench.whatif serve ...``) that
can change how it runs without editing functions/ or cli/, and drives every variant with the same
wrk scripts as bench.run, in ``--rounds`` rounds with the order reversed every other round; the
table gives medians. Variants:

- ``as is``:        plain ``flux dev`` (uvloop + httptools, tracing on);
- ``tracing off``:  ``--no-tracing``, i.e. what tracing costs;
- ``asyncio + h11``: ``flux dev`` as it ran before uvloop and httptools (asyncio's loop, uvicorn's
                    pure-Python h11 parser): what that change gained;
- ``asyncio + h11, tracing off``.

The three fixes of bench/PROFILE.md section 3 were measured with the earlier version of this file
(git 6a8a702) as monkeypatches; they are in Flux since f8cb146.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
from pathlib import Path

ASYNCIO = "asyncio"
NOTRACE = "notrace"
VARIANTS = {"as is": "", "tracing off": NOTRACE, "asyncio + h11": ASYNCIO,
            "asyncio + h11, tracing off": f"{ASYNCIO},{NOTRACE}"}


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.whatif serve")
    parser.add_argument("project", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--variant", default="")
    args = parser.parse_args(argv)
    options = {o for o in args.variant.split(",") if o}
    from cli.commands.local import _line
    from functions.local import devserver

    tracing = False if NOTRACE in options else None
    if ASYNCIO not in options:
        return devserver.run(args.project.resolve(), port=args.port, watch=False, tracing=tracing, out=_line)
    config = devserver.uvicorn.Config

    def h11_config(*a: object, **kw: object) -> object:
        return config(*a, **{**kw, "http": "h11"})

    devserver.uvicorn.Config = h11_config  # type: ignore[assignment,misc]
    return asyncio.run(devserver.serve(args.project.resolve(), port=args.port, watch=False, tracing=tracing,
                                       out=_line))


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def measure_main(argv: list[str]) -> int:
    from bench.database import BenchDatabase
    from bench.figures import scratch_dir
    from bench.loadgen import LoadSettings, run_wrk
    from bench.procs import ManagedProcess
    from bench.setup_env import prepare
    from bench.stacks import REPO, base_env, copy_flux_app, free_port, wait_ready

    parser = argparse.ArgumentParser(prog="python -m bench.whatif", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--scenarios", default="hello,insert,select")
    parser.add_argument("--rounds", type=int, default=2, help="variants run this many times, order reversed each round")
    parser.add_argument("--only", default="", help="comma-separated variant names to run (\"as is\" always runs)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    scenarios = [s for s in args.scenarios.split(",") if s]
    variants = dict(VARIANTS)
    if args.only:
        wanted = {"as is", *(v.strip() for v in args.only.split(","))}
        variants = {k: v for k, v in variants.items() if k in wanted}
    prepare()
    db, work = BenchDatabase(), scratch_dir()
    load = LoadSettings(threads=1, connections=16, duration_s=args.seconds, warmup_s=2)
    results: dict[str, dict[str, list[float]]] = {name: {s: [] for s in scenarios} for name in variants}
    process: ManagedProcess | None = None
    order = list(variants.items())
    try:
        dsn = db.start()
        project = copy_flux_app("flux", work)
        for name, variant in [v for r in range(args.rounds) for v in (order if r % 2 == 0 else order[::-1])]:
            port = free_port()
            argv_ = [sys.executable, "-m", "bench.whatif", "serve", str(project), "--port", str(port),
                     "--variant", variant]
            env = {**base_env(), "DATABASE_URL": dsn}
            process = ManagedProcess(argv_, cwd=REPO, env=env, log_path=work / "whatif.log").start()
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/hello", process)
            for scenario in scenarios:
                db.reset()
                run_wrk(base, scenario, load, duration_s=load.warmup_s)
                result = run_wrk(base, scenario, load)
                if result.non_2xx or result.errors:
                    raise RuntimeError(f"{name}/{scenario}: {result.non_2xx} non-2xx, {result.errors} errors")
                results[name][scenario].append(result.rps)
                print(f"[{name}] {scenario:<6} {result.rps:8,.0f} req/s  p50 {result.p50_ms:6.2f} ms", flush=True)
            process.stop()
            process = None
    finally:
        if process is not None:
            process.stop()
        db.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n| variant | " + " | ".join(f"{s} req/s (gain)" for s in scenarios) + " |")
    print("|---|" + "---:|" * len(scenarios))
    med = {name: {s: statistics.median(v) for s, v in by.items()} for name, by in results.items()}
    for name, by in med.items():
        cells = [f"{by[s]:,.0f} ({(by[s] / med['as is'][s] - 1) * 100:+.0f} %)" for s in scenarios]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(serve_main(sys.argv[2:]))
    sys.exit(measure_main(sys.argv[1:]))
