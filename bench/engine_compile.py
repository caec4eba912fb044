"""Compile-time benchmark of the Data Engine: a typical select from JSON to SQL, no database.

    .venv/bin/python bench/engine_compile.py [--iterations 20000]

Figures (median and p99 per call, each call timed on its own):
- parse:   raw JSON object → validated frozen query model (pydantic);
- compile: model → psycopg ``Composed`` + parameters, identifiers checked against the schema;
- render:  ``Composed`` → SQL text (what the engine sends) and its normalised ``sql_shape``;
- total:   all three, i.e. the engine's CPU cost per query before any I/O.
The schema is the shop's ``orders`` table as introspection builds it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from functions.engine.compiler import compile, sql_shape
from functions.engine.model import parse_query
from functions.engine.schema import Column, Index, Schema, Table

TYPICAL_SELECT = {
    "table": "orders", "operation": "select",
    "columns": ["id", "user_id", "customer_email", "status", "total", "created_at"],
    "filters": [{"column": "customer_email", "op": "eq", "value": "ada@example.com"},
                {"column": "status", "op": "in", "value": ["paid", "shipped"]}],
    "order": [{"column": "created_at", "direction": "desc"}],
    "limit": 20,
}


def shop_schema() -> Schema:
    def col(name: str, type_: str, udt: str, category: str) -> Column:
        return Column(name, type_, udt, "pg_catalog", category, f"_{udt}", nullable=False)

    orders = Table("orders", {c.name: c for c in [
        col("id", "bigint", "int8", "N"), col("user_id", "bigint", "int8", "N"),
        col("customer_email", "text", "text", "S"), col("status", "text", "text", "S"),
        col("total", "numeric(12,2)", "numeric", "N"),
        col("created_at", "timestamp with time zone", "timestamptz", "D"),
    ]}, primary_key=("id",), indexes=(Index("orders_pkey", ("id",), True, True),))
    return Schema({"orders": orders})


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=20_000)
    args = parser.parse_args()
    schema = shop_schema()
    timings: dict[str, list[float]] = {"parse": [], "compile": [], "render": [], "total": []}
    clock = time.perf_counter_ns
    for _ in range(2_000):  # warm-up
        sql_shape(compile(parse_query(TYPICAL_SELECT), schema)[0].as_string(None))
    for _ in range(args.iterations):
        t0 = clock()
        query = parse_query(TYPICAL_SELECT)
        t1 = clock()
        composed, _params = compile(query, schema)
        t2 = clock()
        sql_shape(composed.as_string(None))
        t3 = clock()
        for name, value in (("parse", t1 - t0), ("compile", t2 - t1), ("render", t3 - t2), ("total", t3 - t0)):
            timings[name].append(value / 1000)
    result = {name: {"median_us": round(statistics.median(values), 2), "p99_us": round(percentile(values, 0.99), 2)}
              for name, values in timings.items()}
    result["sql"] = composed.as_string(None)
    result["iterations"] = args.iterations
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
