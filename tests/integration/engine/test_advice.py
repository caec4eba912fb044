"""Index advice on the shop schema with 50,000 orders: proved by EXPLAIN, rolled back, gone once applied."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from functions.engine.advice import PostgresAdvice, index_candidates
from functions.engine.migrations import apply_migrations
from functions.shared.context import CallContext
from functions.shared.ids import new_span_id
from functions.shared.spans import MemorySink, Span

pytestmark = pytest.mark.integration

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


@pytest.fixture(scope="module")
def shop_50k(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, SHOP / "schema")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute((SHOP / "seed" / "orders_50k.sql").read_text())
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] >= 50_000  # type: ignore[index]
    return pg_dsn


@pytest.fixture(scope="module")
def request_spans(shop_50k: str, engine_harness_class) -> list[Span]:  # type: ignore[no-untyped-def]
    """Real db spans: orders filtered on the unindexed customer_email, and on status, five times each."""
    harness = engine_harness_class(shop_50k)
    sink = MemorySink()
    call = CallContext(trace_id="a" * 32, parent_span_id=new_span_id(), function="list_orders", sink=sink)
    try:
        for n in range(5):
            harness.run(harness.engine.query({
                "table": "orders", "operation": "select", "limit": 20,
                "filters": [{"column": "customer_email", "op": "eq", "value": f"customer{n}@example.com"}]}, call))
            harness.run(harness.engine.query({"table": "orders", "operation": "select", "limit": 20,
                                              "filters": [{"column": "status", "op": "eq", "value": "paid"}]}, call))
    finally:
        harness.close()
    return sink.spans


def indexes_on_orders(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'")}


def test_the_unindexed_filter_gets_a_planner_checked_suggestion(shop_50k: str, request_spans: list[Span]) -> None:
    before = indexes_on_orders(shop_50k)
    advice = PostgresAdvice(shop_50k, slow_query_ms=100, n_plus_one_threshold=5)
    [suggestion] = advice.suggest_indexes(request_spans)
    assert suggestion["table"] == "orders" and suggestion["columns"] == ["customer_email"]
    assert suggestion["ddl"] == 'CREATE INDEX IF NOT EXISTS "orders_customer_email_idx" ON "orders" ("customer_email");'
    assert suggestion["est_cost_after"] < suggestion["est_cost_before"] / 10
    assert "ran 5 times in one request" in suggestion["reason"]
    assert indexes_on_orders(shop_50k) == before   # the probe index was rolled back
    # status was repeated as often, but with four values an index does not make the plan cheaper: not shown
    candidates = index_candidates(request_spans, advice.schema(), slow_query_ms=100, n_plus_one_threshold=5)
    assert {c.columns for c in candidates} == {("customer_email",), ("status",)}


def test_schema_graph_lists_tables_keys_indexes_and_suggestions(shop_50k: str, request_spans: list[Span]) -> None:
    graph = PostgresAdvice(shop_50k, recent_spans=lambda: request_spans).schema_graph()
    tables = {t["name"]: t for t in graph["tables"]}
    assert {"users", "products", "orders", "order_items"} <= set(tables) and "flux_migrations" not in tables
    orders = tables["orders"]
    assert orders["primary_key"] == ["id"] and orders["row_estimate"] >= 50_000
    assert {"columns": ["user_id"], "ref_table": "users", "ref_columns": ["id"], "name": "orders_user_id_fkey"} \
        in orders["foreign_keys"]
    assert {"name": "customer_email", "type": "text", "nullable": False, "has_default": False} in orders["columns"]
    assert any(ix["name"] == "orders_user_id_idx" and ix["columns"] == ["user_id"] and not ix["unique"]
               for ix in orders["indexes"])
    assert [s["columns"] for s in graph["suggested_indexes"]] == [["customer_email"]]
    assert PostgresAdvice(shop_50k).schema_graph()["suggested_indexes"] == []


def test_after_running_the_ddl_the_suggestion_is_gone(shop_50k: str, request_spans: list[Span]) -> None:
    advice = PostgresAdvice(shop_50k)
    [suggestion] = advice.suggest_indexes(request_spans)
    with psycopg.connect(shop_50k, autocommit=True) as conn:
        conn.execute(suggestion["ddl"])
    assert "orders_customer_email_idx" in indexes_on_orders(shop_50k)
    assert advice.suggest_indexes(request_spans) == []
