"""What the proposed fixes of bench/PROFILE.md would gain, measured before anyone edits Flux.

    .venv/bin/python -m bench.whatif [--seconds 8] [--scenarios hello,insert,select]

Runs ``flux dev`` on the bench app through a launcher (``python -m bench.whatif serve ...``)
that applies each proposed fix as a monkeypatch, alone and all together, and drives every
variant with the same wrk scripts as bench.run (tracing on, as ``flux dev`` runs by default),
in ``--rounds`` rounds with the order reversed every other round; the table gives medians:

- ``log``:   the per-request line goes to a plain buffered ``sys.stdout`` instead of
             ``rich``'s ``console.print`` (cli/commands/local.py ``_line``);
- ``auth``:  the gateway calls the authorizer inline instead of through ``asyncio.to_thread``
             (functions/local/gateway.py ``LocalGateway.handle``);
- ``spans``: the span writer thread lingers 50 ms after the first record before it drains the
             queue, so one SQLite transaction carries many requests' spans and the event loop
             stops waking it on every write (functions/observability/buffered.py ``BufferedSink._run``);
- ``all three, tracing off``: the three with ``--no-tracing``: what tracing still costs after them.

With ``--uvloop`` it also measures ``flux dev`` on uvloop + httptools (bench/requirements-whatif.txt,
installed into a folder of their own and put on PYTHONPATH for that variant only).

The patches exist only in this launcher; nothing under functions/ or cli/ is changed.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

FIXES = ("log", "auth", "spans")
EXTRA = "uvloop"   # not one of the three: a dependency, measured apart
NOTRACE = "notrace"   # --no-tracing: what tracing still costs once the fixes are in
LINGER_S = 0.05


def _apply(fixes: set[str]) -> None:
    if "auth" in fixes:
        import functions.local.gateway as gateway

        class _InlineAsyncio:
            """``asyncio`` as the gateway module sees it, with ``to_thread`` running the call inline."""

            def __getattr__(self, name: str) -> Any:
                return getattr(asyncio, name)

            @staticmethod
            async def to_thread(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
                return fn(*args, **kwargs)

        gateway.asyncio = _InlineAsyncio()  # type: ignore[assignment]
    if "spans" in fixes:
        import functions.observability.buffered as buffered

        def _run(self: Any) -> None:
            while True:
                first = self._queue.get()
                if first is buffered._STOP:
                    return
                time.sleep(LINGER_S)
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is buffered._STOP:
                        self._write(batch)
                        return
                    batch.append(item)
                self._write(batch)

        buffered.BufferedSink._run = _run  # type: ignore[method-assign]


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.whatif serve")
    parser.add_argument("project", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fixes", default="")
    args = parser.parse_args(argv)
    fixes = {f for f in args.fixes.split(",") if f}
    _apply(fixes)
    if EXTRA in fixes:   # uvicorn's http="auto" then also picks httptools (on PYTHONPATH for this variant)
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from cli.commands.local import _line
    from functions.local.devserver import serve

    def plain(text: str) -> None:
        sys.stdout.write(text + "\n")

    return asyncio.run(serve(args.project.resolve(), port=args.port, watch=False,
                             tracing=False if NOTRACE in fixes else None, out=plain if "log" in fixes else _line))


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def measure_main(argv: list[str]) -> int:
    from bench.database import BenchDatabase
    from bench.figures import scratch_dir
    from bench.loadgen import LoadSettings, run_wrk
    from bench.procs import ManagedProcess
    from bench.setup_env import ensure_whatif_extras, prepare
    from bench.stacks import REPO, base_env, copy_flux_app, free_port, wait_ready

    parser = argparse.ArgumentParser(prog="python -m bench.whatif", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--scenarios", default="hello,insert,select")
    parser.add_argument("--rounds", type=int, default=2, help="variants run this many times, order reversed each round")
    parser.add_argument("--uvloop", action="store_true", help="also measure flux dev on uvloop + httptools")
    parser.add_argument("--only", default="", help="comma-separated variant names to run (\"as is\" always runs)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    scenarios = [s for s in args.scenarios.split(",") if s]
    variants = {"as is": "", **{f: f for f in FIXES}, "all three": ",".join(FIXES),
                "all three, tracing off": ",".join((*FIXES, NOTRACE))}
    if args.uvloop:
        variants.update({EXTRA: EXTRA, f"all three + {EXTRA}": ",".join((*FIXES, EXTRA))})
    if args.only:
        wanted = {"as is", *(v.strip() for v in args.only.split(","))}
        variants = {k: v for k, v in variants.items() if k in wanted}
    prepare()
    extras = ensure_whatif_extras() if args.uvloop else None
    db, work = BenchDatabase(), scratch_dir()
    load = LoadSettings(threads=1, connections=16, duration_s=args.seconds, warmup_s=2)
    results: dict[str, dict[str, list[float]]] = {name: {s: [] for s in scenarios} for name in variants}
    process: ManagedProcess | None = None
    order = list(variants.items())
    try:
        dsn = db.start()
        project = copy_flux_app("flux", work)
        for name, fixes in [v for r in range(args.rounds) for v in (order if r % 2 == 0 else order[::-1])]:
            port = free_port()
            argv_ = [sys.executable, "-m", "bench.whatif", "serve", str(project), "--port", str(port),
                     "--fixes", fixes]
            env = {**base_env(), "DATABASE_URL": dsn}
            if EXTRA in fixes.split(","):
                env["PYTHONPATH"] = str(extras)
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
