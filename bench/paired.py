"""Paired A/B of `flux dev` servers: all up at once, short load slices alternated, CPU per request per slice.

    .venv/bin/python -m bench.paired --scenario select [--slices 6] [--seconds 3] [--notrace] [--against REV]

Servers: ``this`` (the working tree, tracing on); with ``--notrace`` the working tree with
``--no-tracing`` too; with ``--against REV`` a git worktree of REV (tracing on), served by this
tree's virtualenv. Every server gets its own copy of the bench app and the same embedded Postgres.

Why: on this 2-core VM a whole-server run (bench.run) moves by 20-50 % between minutes, so a 10 %
difference between two runs taken minutes apart says nothing. Here the servers take turns in slices
of a few seconds (the order flipped every slice), and each slice of a server is compared with the
same slice of the first one: the median of those paired ratios is what to read. CPU is the
server's whole process tree (the Python gateway and its Deno workers, from /proc); it is also split
into the gateway's main thread and its other threads (the span writer, executor threads).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import ManagedProcess, TreeSampler, thread_cpu_s


@dataclass
class Server:
    name: str
    repo: Path
    tracing: bool
    process: ManagedProcess | None = None
    base: str = ""
    work: Path | None = None
    slices: list[tuple[float, float, float, float]] = field(default_factory=list)  # rps, tree, main, threads µs/req


def start(server: Server, dsn: str) -> None:
    from bench.figures import scratch_dir
    from bench.loadgen import LoadSettings, run_wrk
    from bench.stacks import base_env, copy_flux_app, free_port, wait_ready

    server.work = scratch_dir()
    project = copy_flux_app("flux", server.work)
    port = free_port()
    # This tree's interpreter and packages, the server's own code first on the path.
    launcher = "import sys; sys.path.insert(0, sys.argv.pop(1)); from cli.main import main; sys.argv[0] = 'flux'; " \
               "sys.exit(main())"
    argv = [sys.executable, "-c", launcher, str(server.repo), "dev", str(project), "--port", str(port), "--no-watch"]
    if not server.tracing:
        argv.append("--no-tracing")
    env = {**base_env(), "DATABASE_URL": dsn, "PYTHONPATH": str(server.repo)}
    server.process = ManagedProcess(argv, cwd=server.repo, env=env, log_path=server.work / "serve.log").start()
    server.base = f"http://127.0.0.1:{port}"
    wait_ready(f"{server.base}/hello", server.process)
    run_wrk(server.base, "hello", LoadSettings(threads=1, connections=16, duration_s=1, warmup_s=0))


def fill(server: Server, seconds: float, connections: int) -> None:
    from bench.loadgen import LoadSettings, run_wrk

    run_wrk(server.base, "hello", LoadSettings(threads=1, connections=connections, duration_s=seconds, warmup_s=0))


def measure_slice(server: Server, scenario: str, seconds: float, connections: int) -> None:
    from bench.loadgen import LoadSettings, run_wrk

    assert server.process is not None
    sampler = TreeSampler([server.process.pid], interval_s=0.5)
    mark = sampler.mark()
    main0, others0 = thread_cpu_s(server.process.pid)
    result = run_wrk(server.base, scenario,
                     LoadSettings(threads=1, connections=connections, duration_s=seconds, warmup_s=0))
    main1, others1 = thread_cpu_s(server.process.pid)
    tree_s = sum(sampler.cpu_since(mark).values())
    per = 1e6 / max(result.requests, 1)
    server.slices.append((result.rps, tree_s * per, (main1 - main0) * per, (others1 - others0) * per))


def report(servers: list[Server], scenario: str) -> None:
    first = servers[0]
    print(f"| {scenario} | req/s | CPU µs/req | main thread | other threads | req/s vs {first.name} | "
          f"CPU vs {first.name} (range) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for server in servers:
        rows = server.slices
        rps = [r[0] / b[0] for r, b in zip(rows, first.slices, strict=True)]
        cpu = [r[1] / b[1] for r, b in zip(rows, first.slices, strict=True)]
        print(f"| {server.name} | {statistics.median(r[0] for r in rows):,.0f} | "
              f"{statistics.median(r[1] for r in rows):.0f} | {statistics.median(r[2] for r in rows):.0f} | "
              f"{statistics.median(r[3] for r in rows):.0f} | x{statistics.median(rps):.3f} | "
              f"x{statistics.median(cpu):.3f} ({min(cpu):.2f}-{max(cpu):.2f}) |")


def main(argv: list[str] | None = None) -> int:
    from bench.database import BenchDatabase
    from bench.loadgen import SCENARIOS
    from bench.setup_env import prepare
    from bench.stacks import REPO

    parser = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="hello", choices=SCENARIOS)
    parser.add_argument("--slices", type=int, default=6, help="slices per server (default 6)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per slice (default 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--notrace", action="store_true", help="also the working tree with --no-tracing")
    parser.add_argument("--against", metavar="REV", help="also a git worktree of REV, tracing on")
    parser.add_argument("--fill", type=float, default=0.0, metavar="SECONDS",
                        help="first drive hello on every server this long (fills the span store, as bench.run's "
                             "earlier scenarios do)")
    args = parser.parse_args(argv)
    prepare()
    servers = [Server("this", REPO, tracing=True)]
    if args.notrace:
        servers.insert(0, Server("notrace", REPO, tracing=False))
    worktree: Path | None = None
    if args.against:
        worktree = Path(tempfile.mkdtemp(prefix="flux-paired-")) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(worktree), args.against],
                       check=True)
        servers.append(Server(args.against, worktree, tracing=True))
    db = BenchDatabase()
    try:
        dsn = db.start()
        for server in servers:
            start(server, dsn)
        for server in servers if args.fill > 0 else ():
            fill(server, args.fill, args.connections)
        for index in range(args.slices):
            for server in servers if index % 2 == 0 else servers[::-1]:
                measure_slice(server, args.scenario, args.seconds, args.connections)
        report(servers, args.scenario)
    finally:
        for server in servers:
            if server.process is not None:
                server.process.stop()
            if server.work is not None:
                shutil.rmtree(server.work, ignore_errors=True)
        db.stop()
        if worktree is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
            shutil.rmtree(worktree.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
