"""`flux trace --json` on a 1,000-span trace: in process and as a fresh subprocess.

    .venv/bin/python bench/trace_cli.py [--spans 1000] [--runs 10]

Seeds a project's ``.flux/traces.db`` with one realistic trace (gateway → function →
db spans with N+1 groups and slow queries, nested custom spans, an enqueue with
its ``async →`` branch), then times:
- assemble:   store read + trace assembly (TraceAssembler with the engine's detectors);
- in-process: the CLI command through typer's CliRunner (client resolution, API, JSON out);
- subprocess: a new Python process running the command (what a user waits for).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from typer.testing import CliRunner

from cli.commands.observe import app
from functions.observability.api import ObservabilityApi
from functions.observability.sqlite_store import SqliteSpanStore
from functions.shared.spans import Span, now_us

TRACE = "5ce0e9a56015fec5aadfa328ae398115"


def big_trace(n: int, t0: int) -> list[Span]:
    spans = [Span(TRACE, "root", None, "gateway", "POST /checkout", t0, 900_000, "ok",
                  {"function": "checkout", "http.method": "POST", "http.route": "/checkout", "http.status": 200}),
             Span(TRACE, "fn", "root", "function", "checkout", t0 + 100, 880_000, "ok", {"function": "checkout"}),
             Span(TRACE, "enq", "fn", "queue", "enqueue ship", t0 + 700_000, 900, "ok",
                  {"function": "checkout", "queue.function": "ship", "job_id": "j1"}),
             Span(TRACE, "att", "enq", "queue", "async → ship", t0 + 950_000, 40_000, "ok",
                  {"function": "ship", "job_id": "j1", "attempt": 1, "queue_wait_ms": 249, "outcome": "ok"}),
             Span(TRACE, "fn2", "att", "function", "ship", t0 + 951_000, 38_000, "ok", {"function": "ship"})]
    tables = ["products", "prices", "stock", "users", "coupons"]
    i = 0
    while len(spans) < n:
        parent = "fn" if i % 10 else f"c{i}"
        if i % 10 == 0:
            spans.append(Span(TRACE, f"c{i}", "fn", "custom", f"step {i // 10}", t0 + 500 + i * 600, 5_000, "ok",
                              {"function": "checkout"}))
        table = tables[i % len(tables)]
        spans.append(Span(TRACE, f"d{i}", parent, "db", f"select {table}", t0 + 600 + i * 600, 400 + (i % 7) * 150,
                          "ok", {"function": "checkout", "table": table, "operation": "select", "rows": 1,
                                 "cache": "MISS", "sql_shape": f'SELECT * FROM "{table}" WHERE "id" = $1',
                                 "filter_columns": ["id"], "order_columns": [], "truncated": False}))
        i += 1
    return spans[:n]


def timed(fn, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    print(f"{name:<11} median {statistics.median(ordered):8.1f} ms   min {ordered[0]:8.1f} ms   "
          f"max {ordered[-1]:8.1f} ms   ({len(ordered)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "bench"
        (project / ".flux").mkdir(parents=True)
        (project / "flux.json").write_text('{"name": "bench"}')
        store = SqliteSpanStore(project / ".flux" / "traces.db")
        store.write_spans(big_trace(args.spans, now_us()))
        api = ObservabilityApi(store)
        trace = api.assembler.assemble(store.get_trace(TRACE))
        print(f"trace {TRACE}: {trace['span_count']} spans, {len(trace['n1_warnings'])} N+1 groups, "
              f"{len(trace['critical_path'])} spans on the critical path")
        report("assemble", timed(lambda: api.assembler.assemble(store.get_trace(TRACE)), args.runs))

        runner = CliRunner()
        command = ["trace", TRACE, "--json", "--project-dir", str(project)]

        def in_process() -> None:
            result = runner.invoke(app, command)
            assert result.exit_code == 0, result.output

        report("in-process", timed(in_process, args.runs))
        argv = [sys.executable, "-c", "from cli.commands.observe import app; app()", *command]

        def fresh_process() -> None:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])

        report("subprocess", timed(fresh_process, max(3, args.runs // 2)))
        print("command:", " ".join(argv[:2]), repr(argv[2]), " ".join(argv[3:]))
        store.close()


if __name__ == "__main__":
    main()
