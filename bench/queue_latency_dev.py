"""Local queue latency with real Deno workers under `flux dev`: enqueue-to-start and jobs per second.

    .venv/bin/python bench/queue_latency_dev.py [--jobs 200] [--burst 1000]

Latency: one POST at a time to a trivial async function (202), then the median `queue_wait_ms` of the
attempt spans (enqueue time to the start of the attempt). Throughput: `--burst` POSTs as fast as one
client can send them, timed from the first POST to the last attempt span's end.
Uses DATABASE_URL if set (the function does not touch the database), else an embedded Postgres.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from functions.observability.sqlite_store import SqliteSpanStore

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="flux-qlat-"))
    (root / "flux.json").write_text(json.dumps({"name": "qlat"}))
    (root / "functions" / "job").mkdir(parents=True)
    (root / "functions" / "job" / "index.ts").write_text("export default async (i) => ({ n: i.n });")
    (root / "functions" / "job" / "flux.json").write_text(json.dumps({"async": True}))
    return root


def attempts(store: SqliteSpanStore, traces: list[str]) -> list[dict]:
    found = []
    for trace in traces:
        found += [s for s in store.get_trace(trace) if s.kind == "queue" and s.name.startswith("async")]
    return [{"wait": s.attrs["queue_wait_ms"], "end": (s.start_us + s.duration_us) / 1e6} for s in found]


def wait_for(store: SqliteSpanStore, traces: list[str], timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = attempts(store, traces)
        if len(found) >= len(traces):
            return found
        time.sleep(0.2)
    raise SystemExit(f"only {len(attempts(store, traces))} of {len(traces)} jobs ran in {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    root, port = project(), free_port()
    log = (root / "dev.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "dev", str(root), "--port", str(port), "--no-watch"],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 60
        while "ready in" not in (root / "dev.log").read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit((root / "dev.log").read_text())
            time.sleep(0.1)
        store = SqliteSpanStore(root / ".flux" / "traces.db")
        sequential = []
        for n in range(args.jobs):
            sequential.append(client.post("/job", json={"n": n}).headers["x-request-id"])
            time.sleep(0.005)
        waits = sorted(a["wait"] for a in wait_for(store, sequential))
        started = time.time()
        burst = [client.post("/job", json={"n": n}).headers["x-request-id"] for n in range(args.burst)]
        ends = [a["end"] for a in wait_for(store, burst)]
        elapsed = max(ends) - started
        print(f"enqueue -> start (one job at a time): median {statistics.median(waits):.2f} ms, "
              f"p99 {waits[int(len(waits) * 0.99) - 1]:.2f} ms (n={len(waits)})")
        print(f"throughput: {args.burst} jobs from first POST to last attempt end in {elapsed:.2f} s = "
              f"{args.burst / elapsed:.0f} jobs/s (one HTTP client enqueuing)")
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(30)


if __name__ == "__main__":
    main()
