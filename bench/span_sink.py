"""The span path's own costs, this tree against a git revision, in alternating rounds.

    .venv/bin/python -m bench.span_sink [--against REV] [--rounds 5]

- request thread: µs per request for the three ``BufferedSink.write_spans`` calls a request with a
  query makes (gateway, function, db span), the writer thread running behind them;
- attrs encoding: µs per span to turn its attributes into the stored JSON (``SqliteSpanStore``);
- store: µs per span for ``SqliteSpanStore.write_spans`` in batches of 300.

``REV``'s functions/observability/buffered.py and sqlite_store.py are loaded from git beside the
current ones, so both run in one process on the same data. Why: these costs are a few µs each and
disappear in the noise of a whole-server run (bench.run); here they are measured alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

from functions.observability import buffered, sqlite_store
from functions.shared.ids import new_span_id, new_trace_id
from functions.shared.spans import MemorySink, Span, storable_tree

REPO = Path(__file__).resolve().parent.parent


def _from_git(rev: str, path: str, into: Path) -> ModuleType:
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True, text=True, check=True)
    file = into / Path(path).name
    file.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location(f"old_{file.stem}", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _request() -> list[list[Span]]:
    t, g = new_trace_id(), new_span_id()
    return [[Span(t, g, None, "gateway", "GET /items", 1, 2, "ok", {"http.method": "GET", "http.route": "/items",
                                                                     "http.status": 200, "function": "select_items",
                                                                     "client.ip": "127.0.0.1"})],
            [Span(t, new_span_id(), g, "function", "select_items", 1, 2, "ok",
                  {"function": "select_items", "cold": False, "logs.count": 0})],
            [Span(t, new_span_id(), g, "db", "select items", 1, 2, "ok",
                  {"db.table": "items", "db.operation": "select", "db.rows": 20, "function": "select_items"})]]


def request_thread_us(module: ModuleType, n: int = 20_000) -> float:
    sink = module.BufferedSink(MemorySink())
    requests = [_request() for _ in range(n)]
    started = time.perf_counter()
    for request in requests:
        for spans in request:
            sink.write_spans(spans)
    elapsed = time.perf_counter() - started
    sink.close()
    return 1e6 * elapsed / n


def encoding_us(encode, n: int = 3000) -> float:
    attrs = [s.attrs for _ in range(n) for r in _request() for s in r]
    started = time.perf_counter()
    for a in attrs:
        encode(a)
    return 1e6 * (time.perf_counter() - started) / len(attrs)


def store_us(module: ModuleType, folder: Path, n: int = 3000) -> float:
    store = module.SqliteSpanStore(Path(tempfile.mkdtemp(dir=folder)) / "traces.db")
    spans = [s for _ in range(n) for r in _request() for s in r]
    started = time.perf_counter()
    for i in range(0, len(spans), 300):
        store.write_spans(spans[i:i + 300])
    return 1e6 * (time.perf_counter() - started) / len(spans)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.span_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD~1")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old_b = _from_git(args.against, "functions/observability/buffered.py", folder)
        old_s = _from_git(args.against, "functions/observability/sqlite_store.py", folder)
        old_encode = getattr(old_s, "_json", None) or (lambda a: json.dumps(storable_tree(a), default=str))
        new_encode = getattr(sqlite_store, "_json", None) or old_encode
        rows: dict[str, tuple[list[float], list[float]]] = {
            "request thread, µs per request (3 write_spans)": ([], []),
            "attrs encoding, µs per span": ([], []), "store, µs per span": ([], [])}
        for _ in range(args.rounds):
            a, b, c = rows.values()
            a[0].append(request_thread_us(old_b))
            a[1].append(request_thread_us(buffered))
            b[0].append(encoding_us(old_encode))
            b[1].append(encoding_us(new_encode))
            c[0].append(store_us(old_s, folder))
            c[1].append(store_us(sqlite_store, folder))
    print(f"| median of {args.rounds} rounds | {args.against} | this tree | ratio |\n|---|---:|---:|---:|")
    for name, (old, new) in rows.items():
        o, n = statistics.median(old), statistics.median(new)
        print(f"| {name} | {o:.2f} | {n:.2f} | {n / o:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
