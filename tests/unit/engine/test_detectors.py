"""N+1 (sequential and concurrent) and slow-query detection over spans."""

from __future__ import annotations

from typing import Any

from functions.engine.detectors import find_n_plus_one, find_slow_queries
from functions.shared.spans import Span

SHAPE = 'SELECT * FROM "order_items" WHERE "order_id" = ? LIMIT ?'


def db_span(i: int, start_us: int, duration_us: int, *, parent: str = "fn", shape: str = SHAPE,
            **attrs: Any) -> Span:
    base = {"table": "order_items", "operation": "select", "sql_shape": shape, "filter_columns": ["order_id"],
            "filter_ops": ["eq"], "function": "orders_report_slow"}
    return Span("t" * 32, f"s{i:015d}", parent, "db", "select order_items", start_us, duration_us, "ok",
                {**base, **attrs})


def sequential(n: int, **kw: Any) -> list[Span]:
    return [db_span(i, 1_000 + i * 1_000, 400, **kw) for i in range(n)]


def concurrent(n: int, **kw: Any) -> list[Span]:
    return [db_span(i, 1_000 + i * 50, 900, **kw) for i in range(n)]


def test_a_sequential_loop_is_one_warning_with_every_span() -> None:
    spans = sequential(6)
    [warning] = find_n_plus_one(spans, threshold=5)
    assert warning["table"] == "order_items" and warning["count"] == 6 and warning["sql_shape"] == SHAPE
    assert warning["parent_span_id"] == "fn" and warning["span_ids"] == [s.span_id for s in spans]
    assert warning["concurrent"] is False
    assert "ran 6 times" in warning["message"] and "one after another" in warning["message"]
    assert 'filters: [{ column: "order_id", op: "in", value: orderIds }]' in warning["suggestion"]
    assert warning["suggested_query"] == {"table": "order_items", "operation": "select",
                                          "filters": [{"column": "order_id", "op": "in", "value": "orderIds"}]}


def test_a_promise_all_loop_is_detected_as_concurrent() -> None:
    [warning] = find_n_plus_one(concurrent(8), threshold=5)
    assert warning["concurrent"] is True and warning["count"] == 8
    assert "concurrently" in warning["message"]


def test_below_the_threshold_or_under_different_parents_is_not_n_plus_one() -> None:
    assert find_n_plus_one(sequential(4), threshold=5) == []
    spread = [db_span(i, i * 1000, 100, parent=f"p{i % 2}") for i in range(8)]
    assert find_n_plus_one(spread, threshold=5) == []
    assert len(find_n_plus_one(spread, threshold=4)) == 2


def test_different_shapes_and_non_db_spans_do_not_count_together() -> None:
    spans = [db_span(i, i * 1000, 100, shape=f"SELECT {i}") for i in range(6)]
    spans += [Span("t" * 32, f"h{i}", "fn", "http", "GET x", i, 1, "ok", {"sql_shape": SHAPE}) for i in range(6)]
    assert find_n_plus_one(spans, threshold=5) == []


def test_the_batched_twin_has_no_warning() -> None:
    batched = [db_span(0, 1000, 800, shape='SELECT * FROM "order_items" WHERE "order_id" = ANY(?) LIMIT ?',
                       filter_ops=["in"])]
    assert find_n_plus_one(batched, threshold=5) == []


def test_inserts_in_a_loop_suggest_one_bulk_insert() -> None:
    spans = [db_span(i, i * 1000, 100, operation="insert", shape='INSERT INTO "t" ("a") VALUES (?) RETURNING *',
                     filter_columns=[], filter_ops=[]) for i in range(5)]
    [warning] = find_n_plus_one(spans, threshold=5)
    assert "ctx.db.query({ table: \"order_items\", operation: \"insert\", data: rows })" in warning["suggestion"]


def test_the_suggestion_prefers_the_id_column_and_keeps_other_filters() -> None:
    spans = [db_span(i, i * 1000, 100, filter_columns=["status", "order_id"], filter_ops=["eq", "eq"])
             for i in range(5)]
    [warning] = find_n_plus_one(spans, threshold=5)
    assert warning["suggested_query"]["filters"] == [{"column": "status", "op": "eq", "value": "..."},
                                                     {"column": "order_id", "op": "in", "value": "orderIds"}]


def test_slow_queries_are_those_over_the_threshold_slowest_first() -> None:
    spans = [db_span(0, 0, 99_000), db_span(1, 0, 250_000, filter_columns=["status"]), db_span(2, 0, 120_000)]
    found = find_slow_queries(spans, slow_query_ms=100)
    assert [f["span_id"] for f in found] == [spans[1].span_id, spans[2].span_id]
    assert found[0] == {"span_id": spans[1].span_id, "table": "order_items", "operation": "select",
                        "duration_ms": 250.0, "sql_shape": SHAPE, "rows": None,
                        "message": "slow query: `select order_items` filtering on status took 250.0 ms "
                                   "(slow_query_ms is 100)"}


def test_a_loop_along_a_foreign_key_is_answered_with_the_embed_that_replaces_it() -> None:
    driver = Span("t" * 32, "d" * 16, "fn", "db", "select orders", 100, 300, "ok", {
        "table": "orders", "operation": "select", "sql_shape": 'SELECT * FROM "orders" WHERE "status" = ? LIMIT ?',
        "filter_columns": ["status"], "filter_ops": ["eq"]})
    hints = [{"table": "orders", "embed_table": "order_items", "column": "order_id", "via": "order_id",
              "many": True}]
    [warning] = find_n_plus_one([driver, *sequential(5, embed_hints=hints)], threshold=5)
    assert warning["suggested_query"] == {
        "table": "orders", "operation": "select", "filters": [{"column": "status", "op": "eq", "value": "..."}],
        "embed": {"order_items": {"table": "order_items"}}}
    assert "in one statement: ctx.db.query({ table: \"orders\"" in warning["suggestion"]
    assert "embed: { order_items: { table: \"order_items\" } }" in warning["suggestion"]
    assert "`order_items` as a list" in warning["suggestion"]
    # the two-query form stays available
    assert warning["alternative_query"]["filters"] == [{"column": "order_id", "op": "in", "value": "orderIds"}]


def test_a_to_one_loop_embeds_an_object_on_the_driving_query() -> None:
    driver = Span("t" * 32, "d" * 16, "fn", "db", "select order_items", 100, 300, "ok", {
        "table": "order_items", "operation": "select", "sql_shape": "x", "filter_columns": [], "filter_ops": []})
    hints = [{"table": "order_items", "embed_table": "products", "column": "id", "via": "product_id",
              "many": False},
             {"table": "wishlist", "embed_table": "products", "column": "id", "via": "product_id", "many": False}]
    loop = sequential(5, table="products", filter_columns=["id"], embed_hints=hints,
                      shape='SELECT * FROM "products" WHERE "id" = ? LIMIT ?')
    [warning] = find_n_plus_one([driver, *loop], threshold=5)
    assert warning["suggested_query"] == {"table": "order_items", "operation": "select",
                                          "embed": {"product": {"table": "products"}}}
    assert "`product` as an object (or null)" in warning["suggestion"]
    # with two candidate parents and no earlier query to tell them apart, the `in` rewrite stays
    [plain] = find_n_plus_one(loop, threshold=5)
    assert "embed" not in plain["suggested_query"] and "alternative_query" not in plain
