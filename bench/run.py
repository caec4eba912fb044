"""Flux against a raw Deno + Postgres server, FastAPI + psycopg and ``chalice local``: one command, ratios.

    .venv/bin/python -m bench.run [--quick] [--stacks flux,flux-notrace,raw,fastapi,chalice]
                                  [--scenarios hello,insert,select,real] [--rounds N] [--duration S] [--no-figures]

(``make bench`` / ``make bench-quick``.) On first use it installs wrk (apt-get, as root), the
bench virtualenv bench/.venv-bench (bench/requirements-bench.txt) and the raw server's npm
Postgres driver. Then: one embedded Postgres with the bench schema and seed; each stack in
turn on 127.0.0.1, checked, warmed up and driven by wrk per scenario; the other figures
(cold start, compile time, ``flux trace``, async jobs/s). Prints markdown tables, writes
bench/out/<timestamp>.json, and after a full run of every stack and scenario rewrites
bench/RESULTS.md. Every process it starts is stopped on the way out, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import figures as figs
from bench.database import BenchDatabase
from bench.loadgen import SCENARIOS, LoadSettings, run_wrk, wrk_version
from bench.procs import ManagedProcess, TreeSampler, machine_busy_s
from bench.report import git_sha, machine, markdown_tables, ratios, results_markdown, summarise, write_json
from bench.setup_env import bench_package_versions, prepare
from bench.stacks import REPO, STACKS, Tools, check_endpoints, command, copy_flux_app, free_port, wait_ready

OUT_DIR = REPO / "bench" / "out"
RESULTS = REPO / "bench" / "RESULTS.md"
POSTGRES_JS = "3.4.9"
OTHER_LOAD_WARN = 0.15   # cores used by other processes during a measurement before the figure is flagged


@dataclass(frozen=True)
class Mode:
    load: LoadSettings
    rounds: int
    compile_iterations: int
    trace_runs: int
    jobs: int
    cold_runs: int
    function_cold_runs: int


QUICK = Mode(LoadSettings(threads=1, connections=16, duration_s=3, warmup_s=1), rounds=1, compile_iterations=3000,
             trace_runs=3, jobs=300, cold_runs=1, function_cold_runs=3)
FULL = Mode(LoadSettings(threads=1, connections=16, duration_s=15, warmup_s=3), rounds=2, compile_iterations=20000,
            trace_runs=10, jobs=2000, cold_runs=3, function_cold_runs=10)


def say(text: str) -> None:
    print(text, flush=True)


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


class Bench:
    """One run: the database, the stacks in turn, the figures; cleans up whatever it started."""

    def __init__(self, tools: Tools, mode: Mode, stacks: list[str], scenarios: list[str]) -> None:
        self.tools, self.mode, self.stacks, self.scenarios = tools, mode, stacks, scenarios
        self.db = BenchDatabase()
        self.work = figs.scratch_dir()
        self.current: ManagedProcess | None = None
        self.pg: TreeSampler | None = None
        self.rounds: dict[str, dict[str, list[dict[str, Any]]]] = {s: {c: [] for c in scenarios} for s in stacks}
        self.startup: dict[str, list[float]] = {s: [] for s in stacks}
        self.failures: dict[str, str] = {}

    def run_stacks(self) -> None:
        dsn = self.db.start()
        self.pg = TreeSampler([self.db.postmaster_pid() or 0], pss_every=10**9).start()
        flux_project = copy_flux_app("flux", self.work)
        for round_no in range(self.mode.rounds):
            order = self.stacks if round_no % 2 == 0 else list(reversed(self.stacks))
            for stack in order:
                if stack in self.failures:
                    continue
                try:
                    self._measure(stack, dsn, flux_project, round_no)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - one broken stack must not lose the others' figures
                    self.failures[stack] = f"{type(exc).__name__}: {exc}"
                    say(f"[{stack}] FAILED: {exc}")
                    traceback.print_exc(limit=3)
                finally:
                    self._stop_current()

    def _measure(self, stack: str, dsn: str, flux_project: Path, round_no: int) -> None:
        port = free_port()
        argv, cwd, env = command(stack, self.tools, port=port, dsn=dsn, flux_project=flux_project)
        self.current = ManagedProcess(argv, cwd=cwd, env=env, log_path=self.work / f"{stack}.log").start()
        base = f"http://127.0.0.1:{port}"
        startup = wait_ready(f"{base}/hello", self.current)
        self.startup[stack].append(startup)
        check_endpoints(base)
        say(f"[{stack}] round {round_no + 1}: up in {startup * 1000:.0f} ms (pid {self.current.pid})")
        for scenario in self.scenarios:
            self.rounds[stack][scenario].append(self._scenario(stack, base, scenario))

    def _scenario(self, stack: str, base: str, scenario: str) -> dict[str, Any]:
        process, pg, load = self.current, self.pg, self.mode.load
        assert process is not None and process.sampler is not None and pg is not None
        self.db.reset()
        process.sampler.reset_peak()
        run_wrk(base, scenario, load, duration_s=load.warmup_s)
        server_mark, pg_mark = process.sampler.mark(), pg.mark()
        busy0, own0, wrk0 = machine_busy_s(), time.process_time(), _children_cpu_s()
        result = run_wrk(base, scenario, load)
        busy, own, wrk = machine_busy_s() - busy0, time.process_time() - own0, _children_cpu_s() - wrk0
        server_cpu, pg_cpu = process.sampler.cpu_since(server_mark), pg.cpu_since(pg_mark)
        # CPU used by anything but this stack, Postgres, wrk and this harness: other work on the machine
        other_cores = max(0.0, busy - sum(server_cpu.values()) - sum(pg_cpu.values()) - own - wrk) / result.duration_s
        if not process.alive():
            raise RuntimeError(f"the server exited during {scenario}:\n{process.log_tail()}")
        sample = process.sampler.sample
        per_req = 1000 / max(result.requests, 1)
        row = {**result.to_dict(),
               "peak_rss_mb": sample.peak_rss_bytes / 2**20, "peak_pss_mb": sample.peak_pss_bytes / 2**20,
               "processes": sample.peak_processes,
               "server_cpu_ms_per_req": round(sum(server_cpu.values()) * per_req, 4),
               "postgres_cpu_ms_per_req": round(sum(pg_cpu.values()) * per_req, 4),
               "cpu_split_ms_per_req": {name: round(s * per_req, 4) for name, s in sorted(server_cpu.items()) if s},
               "wrk_cpu_cores": round(wrk / result.duration_s, 3), "other_cpu_cores": round(other_cores, 3)}
        bad = f"  non-2xx {result.non_2xx}" if result.non_2xx else ""
        bad += f"  socket errors {result.errors}" if result.errors else ""
        bad += f"  (other load on the machine: {other_cores:.2f} cores)" if other_cores > OTHER_LOAD_WARN else ""
        say(f"[{stack}] {scenario:<6} {result.rps:>9,.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
            f"p99 {result.p99_ms:7.2f} ms  RSS {row['peak_rss_mb']:6.0f} MB  "
            f"CPU {row['server_cpu_ms_per_req']:.3f} ms/req{bad}")
        return row

    def _stop_current(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None

    def run_figures(self) -> dict[str, Any]:
        mode, dsn = self.mode, self.db.dsn
        steps = {
            "flux_dev_cold_start": lambda: figs.flux_dev_cold_start(self.tools, dsn, self.work, mode.cold_runs),
            "function_cold_start": lambda: figs.function_cold_start(mode.function_cold_runs),
            "compile": lambda: figs.compile_time(mode.compile_iterations),
            "trace_cli": lambda: figs.trace_cli(mode.trace_runs),
            "async_jobs": lambda: figs.async_jobs(self.tools, dsn, self.work, mode.jobs),
        }
        out: dict[str, Any] = {}
        for name, step in steps.items():
            try:
                out[name] = step()
                say(f"[figures] {name}: {_short(out[name])}")
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - report the others
                self.failures[f"figure {name}"] = f"{type(exc).__name__}: {exc}"
                say(f"[figures] {name} FAILED: {exc}")
        return out

    def close(self) -> None:
        self._stop_current()
        if self.pg is not None:
            self.pg.stop()
        self.db.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)   # wrk, once subprocess.run has reaped it
    return usage.ru_utime + usage.ru_stime


def _short(value: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in value.items() if isinstance(v, int | float))


def versions(tools: Tools, db: BenchDatabase) -> dict[str, Any]:
    deno = subprocess.run([str(tools.deno), "--version"], capture_output=True, text=True, check=False)
    return {"python": sys.version.split()[0], "deno": deno.stdout.split()[1] if deno.stdout else "?",
            "postgres": db.version(), "flux_git": git_sha(), "wrk": wrk_version(), "postgres_js": POSTGRES_JS,
            "bench": bench_package_versions(tools.bench_python)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs: the whole thing in under 2 minutes")
    parser.add_argument("--stacks", default=",".join(STACKS), help=f"comma-separated subset of {','.join(STACKS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, help="rounds over all stacks (default: 1 quick, 2 full)")
    parser.add_argument("--duration", type=float, help="measured seconds per stack x scenario")
    parser.add_argument("--connections", type=int, help="wrk connections (default 16)")
    parser.add_argument("--no-figures", action="store_true", help="skip cold start, compile, trace and jobs figures")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="wait up to this long for other load on the machine to stop before starting")
    args = parser.parse_args(argv)
    args.stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name, allowed, given in (("stack", STACKS, args.stacks), ("scenario", SCENARIOS, args.scenarios)):
        unknown = [g for g in given if g not in allowed]
        if unknown or not given:
            parser.error(f"unknown or no {name}: {', '.join(unknown) or '(none)'}; known: {', '.join(allowed)}")
    return args


def mode_for(args: argparse.Namespace) -> Mode:
    mode = QUICK if args.quick else FULL
    load = mode.load
    if args.duration or args.connections:
        load = LoadSettings(threads=load.threads, connections=args.connections or load.connections,
                            duration_s=args.duration or load.duration_s, warmup_s=load.warmup_s)
    return Mode(load, args.rounds or mode.rounds, mode.compile_iterations, mode.trace_runs, mode.jobs,
                mode.cold_runs, mode.function_cold_runs)


def background_load(seconds: float = 2.0) -> float:
    """Cores busy on the machine over ``seconds`` while the benchmark itself does nothing."""
    busy0, own0 = machine_busy_s(), time.process_time()
    time.sleep(seconds)
    return max(0.0, machine_busy_s() - busy0 - (time.process_time() - own0)) / seconds


def wait_for_quiet(max_wait_s: float) -> float:
    """The background load, after waiting (up to ``max_wait_s``) for it to drop under the warning level."""
    deadline = time.monotonic() + max_wait_s
    load = background_load()
    while load > OTHER_LOAD_WARN and time.monotonic() < deadline:
        say(f"waiting for a quiet machine: other processes use {load:.2f} cores")
        time.sleep(10)
        load = background_load()
    if load > OTHER_LOAD_WARN:
        say(f"warning: other processes use {load:.2f} of {machine()['cores']} cores; figures will be noisy "
            "(the tables show the other load seen during each measurement)")
    return load


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = mode_for(args)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # also when started with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = time.perf_counter()
    tools = prepare(say)
    idle_load = wait_for_quiet(args.wait_quiet)
    bench = Bench(tools, mode, args.stacks, args.scenarios)
    try:
        bench.run_stacks()
        figures = {} if args.no_figures else bench.run_figures()
        meta_versions = versions(tools, bench.db)
    except KeyboardInterrupt:
        say("interrupted: stopping everything the benchmark started")
        return 130
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            bench.close()
    figures["startup_s"] = {s: round(min(v), 3) for s, v in bench.startup.items() if v}
    summary = {stack: {sc: summarise(rows) for sc, rows in by.items() if rows} for stack, by in bench.rounds.items()}
    summary = {stack: by for stack, by in summary.items() if by}
    result = {
        "meta": {"started": started.isoformat().replace("+00:00", "Z"), "elapsed_s": round(time.perf_counter() - clock),
                 "quick": args.quick, "machine": machine(), "versions": meta_versions,
                 "other_load_before_cores": round(idle_load, 2),
                 "memory_note": "peak RSS/PSS of the server's process tree (Flux: gateway + Deno workers); "
                                "the shared Postgres is excluded"},
        "settings": {"stacks": args.stacks, "scenarios": args.scenarios, "threads": mode.load.threads,
                     "connections": mode.load.connections, "duration_s": mode.load.duration_s,
                     "warmup_s": mode.load.warmup_s, "rounds": mode.rounds},
        "summary": summary,
        "ratios": ratios(summary, args.scenarios),
        "figures": figures,
        "rounds": bench.rounds,
        "failures": bench.failures,
    }
    path = write_json(result, OUT_DIR)
    say("")
    say(markdown_tables(result))
    say("")
    say("memory: " + result["meta"]["memory_note"])
    complete = (not args.quick and not bench.failures and set(args.stacks) == set(STACKS)
                and set(args.scenarios) == set(SCENARIOS))
    if complete:
        RESULTS.write_text(results_markdown(result))
        say(f"wrote {RESULTS.relative_to(REPO)}")
    say(f"wrote {path.relative_to(REPO)} in {result['meta']['elapsed_s']} s")
    if bench.failures:
        say("failures: " + "; ".join(f"{k}: {v}" for k, v in bench.failures.items()))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
