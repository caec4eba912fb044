"""Extra latency of ``DataEngine.query`` over the same SQL run directly with psycopg, on the same pool.

    .venv/bin/python bench/engine_overhead.py [--iterations 3000]      # embedded Postgres in a temp dir
    DATABASE_URL=postgresql://... .venv/bin/python bench/engine_overhead.py   # or an existing server

The shop schema is migrated into a scratch database and seeded with 50,000 orders. Two queries:
``select``, a typical list_orders select (two filters, an order, limit 20) on an indexed column, and
``embed``, the same page with each order's items and their products and the customer embedded
(two levels, the items with their own filter, order and limit): one statement either way. For
each (``--query select|embed|both``), every iteration runs, in alternating order so drift hits both
alike:
- direct: ``pool.connection()`` → ``conn.execute(sql, params)`` → ``fetchall()`` with dict rows
  (the SQL text and parameters the engine compiled once, so both are prepared alike by psycopg);
- engine: ``DataEngine.query(raw_json, call)``: parse, compile, render, execute, rows to JSON,
  one db span into an in-memory sink.
Reported: median and p99 of each, and the median of the per-iteration difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from functions.engine.compiler import compile
from functions.engine.embedded_pg import EmbeddedPostgres
from functions.engine.migrations import apply_migrations
from functions.engine.model import parse_query
from functions.engine.service import DataEngine
from functions.shared.context import CallContext
from functions.shared.spans import MemorySink

SHOP = Path(__file__).resolve().parents[1] / "examples" / "shop"
QUERY = {
    "table": "orders", "operation": "select",
    "columns": ["id", "user_id", "customer_email", "status", "total", "created_at"],
    "filters": [{"column": "user_id", "op": "eq", "value": 2}, {"column": "status", "op": "in", "value": ["paid"]}],
    "order": [{"column": "id", "direction": "desc"}],
    "limit": 20,
}
EMBED_QUERY = {
    **QUERY,
    "embed": {
        "customer": {"table": "users", "columns": ["name", "email"]},
        "items": {"table": "order_items", "columns": ["id", "quantity", "unit_price"],
                  "filters": [{"column": "quantity", "op": "gt", "value": 0}], "order": [{"column": "id"}],
                  "limit": 50, "embed": {"product": {"table": "products", "columns": ["sku", "name"]}}},
    },
}
QUERIES = {"select": QUERY, "embed": EMBED_QUERY}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(dsn: str, iterations: int, query: dict[str, Any]) -> dict[str, Any]:
    engine = DataEngine.create(dsn, pool_min=1, pool_max=1)   # one connection: both paths share it
    await engine.open()
    schema = await engine.refresh_schema()
    composed, params = compile(parse_query(query), schema)
    text = composed.as_string(None)
    pool = engine.executor.pool  # type: ignore[attr-defined]
    sink = MemorySink()
    call = CallContext(trace_id="b" * 32, parent_span_id="c" * 16, function="bench", sink=sink)

    async def direct() -> int:
        async with pool.connection() as conn:
            cur = await conn.execute(text, params)
            return len(await cur.fetchall())

    async def through_engine() -> int:
        return len((await engine.query(query, call))["rows"])

    for _ in range(200):   # warm-up: connections, prepared statements, caches
        await direct()
        await through_engine()
    rows = await direct()
    times: dict[str, list[float]] = {"direct": [], "engine": []}
    clock = time.perf_counter_ns
    for i in range(iterations):
        order = (("direct", direct), ("engine", through_engine)) if i % 2 else \
            (("engine", through_engine), ("direct", direct))
        for name, fn in order:
            t0 = clock()
            await fn()
            times[name].append((clock() - t0) / 1000)
        if len(sink.spans) > 10_000:
            sink.spans.clear()
    await engine.close()
    diffs = [e - d for e, d in zip(times["engine"], times["direct"], strict=True)]
    return {
        "rows_per_query": rows,
        "iterations": iterations,
        "direct_us": {"median": round(statistics.median(times["direct"]), 1),
                      "p99": round(percentile(times["direct"], 0.99), 1)},
        "engine_us": {"median": round(statistics.median(times["engine"]), 1),
                      "p99": round(percentile(times["engine"], 0.99), 1)},
        "extra_us_median_of_differences": round(statistics.median(diffs), 1),
        "extra_us_difference_of_medians": round(statistics.median(times["engine"]) -
                                                statistics.median(times["direct"]), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--query", choices=["select", "embed", "both"], default="both")
    args = parser.parse_args()
    import os

    external = os.environ.get("DATABASE_URL")
    with tempfile.TemporaryDirectory() as tmp:
        server = None if external else EmbeddedPostgres(Path(tmp) / "pg", durable=False)
        base = external or server.start()  # type: ignore[union-attr]
        try:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS flux_bench WITH (FORCE)")
                conn.execute("CREATE DATABASE flux_bench")
            dsn = base.rsplit("/", 1)[0] + "/flux_bench" if "?" not in base else base
            apply_migrations(dsn, SHOP / "schema")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute((SHOP / "seed" / "orders_50k.sql").read_text())
            kinds = list(QUERIES) if args.query == "both" else [args.query]
            report = {kind: asyncio.run(measure(dsn, args.iterations, QUERIES[kind])) for kind in kinds}
            print(json.dumps(report, indent=2))
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
