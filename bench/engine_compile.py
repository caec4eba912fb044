"""Compile-time benchmark of the Data Engine: a typical select, and a typical embedded one, from JSON to SQL.

    .venv/bin/python bench/engine_compile.py [--iterations 20000]

Two queries, measured side by side in the same run (alternating, so drift hits both alike):
- ``select``: today's typical list query (two filters, an order, a limit);
- ``embed``: a typical embedded one, two levels deep (orders → items → product, plus the
  customer), with filters, order and limit at the top and in the to-many embed.

Figures (median and p99 per call, each call timed on its own):
- parse:   raw JSON object → validated frozen query model (pydantic);
- compile: model → psycopg ``Composed`` + parameters, identifiers checked against the schema;
- render:  ``Composed`` → SQL text (what the engine sends) and its normalised ``sql_shape``;
- total:   all three, i.e. the engine's CPU cost per query before any I/O.
The schema is the shop's tables (users, products, orders, order_items) as introspection builds them.
``embed_vs_select`` is the ratio of the two totals' medians.
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
from functions.engine.schema import Column, ForeignKey, Index, Schema, Table

TYPICAL_SELECT = {
    "table": "orders", "operation": "select",
    "columns": ["id", "user_id", "customer_email", "status", "total", "created_at"],
    "filters": [{"column": "customer_email", "op": "eq", "value": "ada@example.com"},
                {"column": "status", "op": "in", "value": ["paid", "shipped"]}],
    "order": [{"column": "created_at", "direction": "desc"}],
    "limit": 20,
}

TYPICAL_EMBED = {
    "table": "orders", "operation": "select", "columns": ["id", "status", "total", "created_at"],
    "filters": [{"column": "customer_email", "op": "eq", "value": "ada@example.com"},
                {"column": "status", "op": "in", "value": ["paid", "shipped"]}],
    "order": [{"column": "created_at", "direction": "desc"}],
    "limit": 20,
    "embed": {
        "customer": {"table": "users", "columns": ["name", "email"]},
        "items": {"table": "order_items", "columns": ["id", "quantity", "unit_price"],
                  "filters": [{"column": "quantity", "op": "gt", "value": 0}],
                  "order": [{"column": "id"}], "limit": 50,
                  "embed": {"product": {"table": "products", "columns": ["sku", "name"]}}},
    },
}
QUERIES = {"select": TYPICAL_SELECT, "embed": TYPICAL_EMBED}


def shop_schema() -> Schema:
    def col(name: str, type_: str, udt: str, category: str) -> Column:
        return Column(name, type_, udt, "pg_catalog", category, f"_{udt}", nullable=False)

    orders = Table("orders", {c.name: c for c in [
        col("id", "bigint", "int8", "N"), col("user_id", "bigint", "int8", "N"),
        col("customer_email", "text", "text", "S"), col("status", "text", "text", "S"),
        col("total", "numeric(12,2)", "numeric", "N"),
        col("created_at", "timestamp with time zone", "timestamptz", "D"),
    ]}, primary_key=("id",), indexes=(Index("orders_pkey", ("id",), True, True),),
        foreign_keys=(ForeignKey("orders_user_id_fkey", ("user_id",), "users", ("id",)),))
    users = Table("users", {c.name: c for c in [
        col("id", "bigint", "int8", "N"), col("email", "text", "text", "S"), col("name", "text", "text", "S"),
    ]}, primary_key=("id",))
    products = Table("products", {c.name: c for c in [
        col("id", "bigint", "int8", "N"), col("sku", "text", "text", "S"), col("name", "text", "text", "S"),
        col("price", "numeric(10,2)", "numeric", "N"),
    ]}, primary_key=("id",))
    items = Table("order_items", {c.name: c for c in [
        col("id", "bigint", "int8", "N"), col("order_id", "bigint", "int8", "N"),
        col("product_id", "bigint", "int8", "N"), col("quantity", "integer", "int4", "N"),
        col("unit_price", "numeric(10,2)", "numeric", "N"),
    ]}, primary_key=("id",), foreign_keys=(
        ForeignKey("order_items_order_id_fkey", ("order_id",), "orders", ("id",)),
        ForeignKey("order_items_product_id_fkey", ("product_id",), "products", ("id",))))
    return Schema({"orders": orders, "users": users, "products": products, "order_items": items})


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=20_000)
    args = parser.parse_args()
    schema = shop_schema()
    timings = {kind: {"parse": [], "compile": [], "render": [], "total": []} for kind in QUERIES}
    sql: dict[str, str] = {}
    clock = time.perf_counter_ns
    for _ in range(2_000):  # warm-up
        for raw in QUERIES.values():
            sql_shape(compile(parse_query(raw), schema)[0].as_string(None))
    for i in range(args.iterations):
        kinds = list(QUERIES) if i % 2 else list(reversed(QUERIES))
        for kind in kinds:
            t0 = clock()
            query = parse_query(QUERIES[kind])
            t1 = clock()
            composed, _params = compile(query, schema)
            t2 = clock()
            sql[kind] = composed.as_string(None)
            sql_shape(sql[kind])
            t3 = clock()
            for name, value in (("parse", t1 - t0), ("compile", t2 - t1), ("render", t3 - t2),
                                ("total", t3 - t0)):
                timings[kind][name].append(value / 1000)
    result: dict[str, object] = {
        kind: {name: {"median_us": round(statistics.median(values), 2),
                      "p99_us": round(percentile(values, 0.99), 2)} for name, values in parts.items()}
        for kind, parts in timings.items()}
    result["embed_vs_select"] = round(statistics.median(timings["embed"]["total"]) /
                                      statistics.median(timings["select"]["total"]), 2)
    result["sql"] = sql
    result["iterations"] = args.iterations
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
