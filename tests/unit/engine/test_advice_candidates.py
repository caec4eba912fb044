"""Index candidates from spans (pure): which columns, in which order, and which are already covered."""

from __future__ import annotations

from typing import Any

from functions.engine.advice import Candidate, index_candidates, index_ddl, index_name, probe_query
from functions.engine.schema import Schema
from functions.shared.spans import Span


def span(i: int, duration_ms: float, *, table: str = "orders", filters: list[tuple[str, str]] | None = None,
         order: list[str] | None = None, parent: str = "fn", operation: str = "select") -> Span:
    filters = filters or []
    attrs: dict[str, Any] = {"table": table, "operation": operation, "filter_columns": [c for c, _ in filters],
                             "filter_ops": [o for _, o in filters], "order_columns": order or [],
                             "sql_shape": f"shape {table} {filters} {order}"}
    return Span("t" * 32, f"s{i}", parent, "db", f"{operation} {table}", i * 1000, int(duration_ms * 1000), "ok", attrs)


def candidates(schema: Schema, spans: list[Span]) -> list[Candidate]:
    return index_candidates(spans, schema, slow_query_ms=100, n_plus_one_threshold=5)


def test_a_slow_filter_on_an_unindexed_column_is_a_candidate(schema: Schema) -> None:
    [candidate] = candidates(schema, [span(0, 250, filters=[("customer_email", "eq")])])
    assert candidate.table == "orders" and candidate.columns == ("customer_email",)
    assert "took 250.0 ms" in candidate.reasons[0]


def test_fast_queries_that_are_not_repeated_are_ignored(schema: Schema) -> None:
    assert candidates(schema, [span(0, 5, filters=[("customer_email", "eq")])]) == []


def test_a_repeated_query_is_a_candidate_even_when_fast(schema: Schema) -> None:
    spans = [span(i, 1, filters=[("status", "eq")]) for i in range(5)]
    [candidate] = candidates(schema, spans)
    assert candidate.columns == ("status",) and "ran 5 times in one request" in candidate.reasons[0]


def test_equality_columns_lead_then_one_range_column_or_the_sort(schema: Schema) -> None:
    [a] = candidates(schema, [span(0, 300, filters=[("total", "gt"), ("status", "eq"), ("created_at", "lt")])])
    assert a.columns == ("status", "total")
    [b] = candidates(schema, [span(0, 300, filters=[("status", "eq")], order=["created_at"])])
    assert b.columns == ("status", "created_at")
    assert candidates(schema, [span(0, 300, filters=[("status", "like"), ("customer_email", "neq")])]) == []


def test_columns_an_existing_index_leads_with_are_skipped(schema: Schema) -> None:
    # orders has (user_id, created_at) and the primary key (id)
    assert candidates(schema, [span(0, 300, filters=[("user_id", "eq")])]) == []
    assert candidates(schema, [span(0, 300, filters=[("user_id", "eq")], order=["created_at"])]) == []
    assert candidates(schema, [span(0, 300, filters=[("id", "in")])]) == []
    [c] = candidates(schema, [span(0, 300, filters=[("user_id", "eq"), ("status", "eq")])])
    assert c.columns == ("user_id", "status")


def test_unknown_tables_columns_and_writes_are_ignored(schema: Schema) -> None:
    assert candidates(schema, [span(0, 300, table="nope", filters=[("a", "eq")])]) == []
    assert candidates(schema, [span(0, 300, filters=[("nope", "eq")])]) == []
    assert candidates(schema, [span(0, 300, operation="insert", filters=[("status", "eq")])]) == []


def test_the_same_index_from_several_spans_is_one_candidate(schema: Schema) -> None:
    spans = [span(0, 300, filters=[("status", "eq")]), span(1, 400, filters=[("status", "in")])]
    [candidate] = candidates(schema, spans)
    assert len(candidate.reasons) == 2


def test_probe_query_is_rebuilt_from_attrs_with_typed_generic_parameters(schema: Schema) -> None:
    candidate = Candidate("orders", ("status", "total"), (("status", "eq"), ("total", "gte"), ("tags", "is_null")),
                          ("created_at",), "shape")
    text = probe_query(candidate, schema.tables["orders"]).as_string(None)
    assert text == ('SELECT * FROM "orders" WHERE "status" = $1::"pg_catalog"."text" AND '
                    '"total" >= $2::"pg_catalog"."numeric" AND "tags" IS NULL ORDER BY "created_at" LIMIT 100')
    fallback = probe_query(candidate, schema.tables["orders"], generic=False).as_string(None)
    assert '"status" = %s AND "total" >= %s' in fallback


def test_ddl_and_index_names_fit_postgres_limits() -> None:
    assert index_ddl("orders", ("status",)).as_string(None) == \
        'CREATE INDEX IF NOT EXISTS "orders_status_idx" ON "orders" ("status")'
    long = index_name("t" * 40, ("c" * 30, "d" * 30))
    assert len(long.encode()) <= 63 and long.endswith("_idx")
    assert long != index_name("t" * 40, ("c" * 30, "e" * 30))


def _with_views(schema: Schema) -> Schema:
    from dataclasses import replace

    from functions.engine.schema import Table

    orders = schema.tables["orders"]
    paid = Table("paid_orders", {n: orders.columns[n] for n in ("id", "user_id", "customer_email", "total")},
                 kind="view", base_tables=("orders",))
    totals = Table("user_totals", {"user_id": orders.columns["user_id"], "spent": orders.columns["total"]},
                   kind="view", base_tables=("orders", "users"))
    snapshot = replace(paid, name="paid_snapshot", kind="materialized_view")
    return Schema(tables={**schema.tables, "paid_orders": paid, "user_totals": totals, "paid_snapshot": snapshot})


def test_a_view_is_never_indexed_its_candidate_goes_to_the_one_base_table_or_nowhere(schema: Schema) -> None:
    views = _with_views(schema)
    [moved] = candidates(views, [span(0, 250, table="paid_orders", filters=[("customer_email", "eq")])])
    assert moved.table == "orders" and moved.columns == ("customer_email",)
    assert "through view 'paid_orders'" in moved.reasons[0]
    # two base tables: no way to tell which holds the column, so no suggestion at all
    assert candidates(views, [span(0, 250, table="user_totals", filters=[("spent", "gt")])]) == []
    # a materialized view is a real relation: it is indexed itself
    [own] = candidates(views, [span(0, 250, table="paid_snapshot", filters=[("customer_email", "eq")])])
    assert own.table == "paid_snapshot"

