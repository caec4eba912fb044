"""The richer ctx.db forms against the real embedded Postgres: embeds, boolean trees, operators, counts, aggregates,
increments, batch references and views. Each test checks the rows *and* that one statement produced them."""

from __future__ import annotations

from typing import Any

import pytest

from functions.shared.errors import InvalidQuery

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shop(harness: Any) -> Any:
    """Three users, five products, six orders with lines: small enough to know every answer."""
    users = harness.rows({"table": "users", "operation": "insert", "returning": ["id"], "data": [
        {"email": "ada@x.test", "name": "Ada"}, {"email": "grace@x.test", "name": "Grace"},
        {"email": "alan@x.test", "name": "Alan", "active": False}]})
    products = harness.rows({"table": "products", "operation": "insert", "returning": ["id"], "data": [
        {"name": "Red running shoes", "tags": ["shoes", "red"], "attrs": {"size": 42, "colour": "red"},
         "price": 80, "stock": 5},
        {"name": "Blue walking shoes", "tags": ["shoes", "blue"], "attrs": {"size": 39, "colour": "blue"},
         "price": 60, "stock": 2},
        {"name": "Wool socks", "tags": ["socks"], "attrs": {"size": 40, "pack": {"count": 3}}, "price": 9.5},
        {"name": "Rain jacket", "tags": ["jackets", "red"], "attrs": {"colour": "red", "size": None}, "price": 120},
        {"name": "Shoe laces", "tags": [], "attrs": {}, "price": 2}]})
    ids = [u["id"] for u in users]
    pids = [p["id"] for p in products]
    orders = harness.rows({"table": "orders", "operation": "insert", "returning": ["id"], "data": [
        {"user_id": ids[0], "status": "paid", "total": 160}, {"user_id": ids[0], "status": "new", "total": 9.5},
        {"user_id": ids[1], "status": "paid", "total": 180}, {"user_id": ids[1], "status": "shipped", "total": 2},
        {"user_id": ids[2], "status": "paid", "total": 120}, {"user_id": ids[2], "status": "new", "total": 0}]})
    oids = [o["id"] for o in orders]
    harness.rows({"table": "order_lines", "operation": "insert", "returning": [], "data": [
        {"order_id": oids[0], "product_id": pids[0], "quantity": 2},
        {"order_id": oids[1], "product_id": pids[2], "quantity": 1},
        {"order_id": oids[2], "product_id": pids[1], "quantity": 3},
        {"order_id": oids[2], "product_id": pids[4], "quantity": 1},
        {"order_id": oids[3], "product_id": pids[4], "quantity": 1},
        {"order_id": oids[4], "product_id": pids[3], "quantity": 1}]})
    return {"users": ids, "products": pids, "orders": oids}


def db_spans(harness: Any) -> list[Any]:
    return [s for s in harness.sink.spans if s.kind == "db"]


def test_two_level_embed_is_one_statement_with_nested_rows(harness: Any, shop: Any) -> None:
    before = len(db_spans(harness))
    rows = harness.rows({
        "table": "orders", "operation": "select", "columns": ["id", "status"],
        "filters": [{"column": "status", "op": "eq", "value": "paid"}], "order": [{"column": "id"}], "limit": 2,
        "embed": {
            "lines": {"table": "order_lines", "columns": ["quantity"], "order": [{"column": "quantity",
                                                                                  "direction": "desc"}],
                      "embed": {"product": {"table": "products", "columns": ["name", "price"]}}},
            "customer": {"table": "users", "columns": ["name"]}}})
    spans = db_spans(harness)[before:]
    assert len(spans) == 1, "an embed must be one statement"
    assert spans[0].attrs["embeds"] == ["lines:order_lines", "lines.product:products", "customer:users"]
    assert "LATERAL" in spans[0].attrs["sql_shape"] and spans[0].attrs["rows"] == 2
    first, second = rows
    assert first == {"id": shop["orders"][0], "status": "paid", "customer": {"name": "Ada"},
                     "lines": [{"quantity": 2, "product": {"name": "Red running shoes", "price": 80}}]}
    assert second["customer"] == {"name": "Grace"}
    assert [line["quantity"] for line in second["lines"]] == [3, 1]
    assert [line["product"]["name"] for line in second["lines"]] == ["Blue walking shoes", "Shoe laces"]


def test_embed_filters_limit_and_inner(harness: Any, shop: Any) -> None:
    users = harness.rows({"table": "users", "operation": "select", "columns": ["name"], "order": [{"column": "id"}],
                          "embed": {"orders": {"table": "orders", "columns": ["total"], "limit": 1,
                                               "filters": [{"column": "status", "op": "eq", "value": "paid"}],
                                               "order": [{"column": "total", "direction": "desc"}]}}})
    assert users == [{"name": "Ada", "orders": [{"total": 160}]}, {"name": "Grace", "orders": [{"total": 180}]},
                     {"name": "Alan", "orders": [{"total": 120}]}]
    shipped = harness.rows({"table": "users", "operation": "select", "columns": ["name"],
                            "embed": {"orders": {"table": "orders", "columns": ["id"], "inner": True,
                                                 "filters": [{"column": "status", "op": "eq", "value": "shipped"}]}}})
    assert [u["name"] for u in shipped] == ["Grace"] and len(shipped[0]["orders"]) == 1
    none = harness.rows({"table": "orders", "operation": "select", "columns": ["id"], "order": [{"column": "id"}],
                         "limit": 1, "embed": {"customer": {"table": "users", "columns": ["name"],
                                                            "filters": [{"column": "active", "op": "eq",
                                                                         "value": False}]}}})
    assert none == [{"id": shop["orders"][0], "customer": None}]  # to-one whose filter does not match: null


def test_embed_mistakes_are_400_naming_the_part(harness: Any, shop: Any) -> None:
    cases = [
        ({"embed": {"lines": {"table": "order_lines", "columns": ["qty"]}}},
         "embed.lines.columns[0]: unknown column 'qty' in table 'order_lines'"),
        ({"embed": {"x": {"table": "products"}}}, "embed.x: no foreign key links 'orders' and 'products'"),
        ({"embed": {"lines": {"table": "order_lines", "embed": {"p": {"table": "products", "filters": [
            {"or": [{"column": "nope", "op": "eq", "value": 1}]}]}}}}},
         "embed.lines.embed.p.filters[0].or[0].column: unknown column 'nope' in table 'products'"),
        ({"embed": {"status": {"table": "users"}}}, "embed.status: 'status' is also a column of 'orders'"),
    ]
    for extra, message in cases:
        with pytest.raises(InvalidQuery) as caught:
            harness.query({"table": "orders", "operation": "select", **extra})
        assert message in caught.value.message, caught.value.message


def test_or_and_not_filters(harness: Any, shop: Any) -> None:
    def totals(filters: list[Any]) -> list[Any]:
        rows = harness.rows({"table": "orders", "operation": "select", "columns": ["total"], "filters": filters,
                             "order": [{"column": "total"}]})
        return [r["total"] for r in rows]

    assert totals([{"or": [{"column": "status", "op": "eq", "value": "shipped"},
                           {"column": "total", "op": "gte", "value": 170}]}]) == [2, 180]
    assert totals([{"column": "status", "op": "eq", "value": "paid"},
                   {"not": {"column": "total", "op": "gt", "value": 150}}]) == [120]
    assert totals([{"or": [{"and": [{"column": "status", "op": "eq", "value": "new"},
                                    {"column": "total", "op": "gt", "value": 0}]},
                           {"column": "status", "op": "eq", "value": "shipped"}]}]) == [2, 9.5]
    with pytest.raises(InvalidQuery, match=r"filters\[1\]\.or\[0\]\.column: unknown column 'x'"):
        totals([{"column": "id", "op": "gt", "value": 0}, {"or": [{"column": "x", "op": "eq", "value": 1}]}])


def test_array_json_and_full_text_operators(harness: Any, shop: Any) -> None:
    def names(filters: list[Any]) -> list[str]:
        rows = harness.rows({"table": "products", "operation": "select", "columns": ["name"], "filters": filters,
                             "order": [{"column": "id"}]})
        return [r["name"] for r in rows]

    assert names([{"column": "tags", "op": "contains", "value": ["shoes", "red"]}]) == ["Red running shoes"]
    assert names([{"column": "tags", "op": "overlaps", "value": ["red", "socks"]}]) == [
        "Red running shoes", "Wool socks", "Rain jacket"]
    assert names([{"column": "tags", "op": "contained_by", "value": ["socks", "shoes"]}]) == ["Wool socks",
                                                                                            "Shoe laces"]
    assert names([{"column": "attrs", "op": "contains", "value": {"colour": "red"}}]) == ["Red running shoes",
                                                                                         "Rain jacket"]
    assert names([{"column": "attrs", "op": "gte", "path": ["size"], "value": 40}]) == ["Red running shoes",
                                                                                       "Wool socks"]
    assert names([{"column": "attrs", "op": "eq", "path": ["pack", "count"], "value": 3}]) == ["Wool socks"]
    assert names([{"column": "attrs", "op": "in", "path": ["colour"], "value": ["blue", "green"]}]) == [
        "Blue walking shoes"]
    assert names([{"column": "attrs", "op": "is_null", "path": ["size"]}]) == ["Rain jacket", "Shoe laces"]
    assert names([{"column": "attrs", "op": "ilike", "path": ["colour"], "value": "R%"}]) == [
        "Red running shoes", "Rain jacket"]
    assert names([{"column": "name", "op": "search", "value": "shoe -blue", "config": "english"}]) == [
        "Red running shoes", "Shoe laces"]
    assert names([{"or": [{"column": "name", "op": "search", "value": "jacket", "config": "english"},
                          {"column": "tags", "op": "contains", "value": ["socks"]}]}]) == ["Wool socks",
                                                                                          "Rain jacket"]
    with pytest.raises(InvalidQuery, match="'contains' applies to array and jsonb columns; 'name' is text"):
        names([{"column": "name", "op": "contains", "value": ["a"]}])
    with pytest.raises(InvalidQuery, match=r"filters\[0\]\.value\[0\]: 'x' expects an integer"):
        harness.rows({"table": "users", "operation": "select", "filters": [
            {"column": "id", "op": "in", "value": ["x"]}]})


def test_exact_counts_alone_and_next_to_a_page(harness: Any, shop: Any) -> None:
    paid = [{"column": "status", "op": "eq", "value": "paid"}]
    alone = harness.rows({"table": "orders", "operation": "select", "filters": paid, "count": "exact", "limit": 0})
    assert alone == {"rows": [], "count": 3, "truncated": True, "next_offset": 0}
    page = harness.rows({"table": "orders", "operation": "select", "columns": ["total"], "filters": paid,
                         "count": "exact", "order": [{"column": "total"}], "limit": 2})
    assert page == {"rows": [{"total": 120}, {"total": 160}], "count": 3, "truncated": True, "next_offset": 2}
    rest = harness.rows({"table": "orders", "operation": "select", "columns": ["total"], "filters": paid,
                         "count": "exact", "order": [{"column": "total"}], "limit": 2, "offset": 2})
    assert rest == {"rows": [{"total": 180}], "count": 3, "truncated": False, "next_offset": None}
    past = harness.rows({"table": "orders", "operation": "select", "filters": paid, "count": "exact", "offset": 50})
    assert past == {"rows": [], "count": 3, "truncated": False, "next_offset": None}
    groups = harness.rows({"table": "orders", "operation": "select", "group_by": ["status"], "count": "exact",
                           "limit": 0, "aggregates": [{"fn": "count"}]})
    assert groups["count"] == 3


def test_paging_through_everything_by_offset_and_by_keyset(harness: Any, shop: Any) -> None:
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = harness.rows({"table": "orders", "operation": "select", "columns": ["id"], "page": True,
                             "order": [{"column": "id"}], "limit": 4, "offset": offset})
        seen += [r["id"] for r in page["rows"]]
        offset = page["next_offset"]
    keyset: list[int] = []
    last = 0
    while True:
        page = harness.rows({"table": "orders", "operation": "select", "columns": ["id"], "page": True,
                             "filters": [{"column": "id", "op": "gt", "value": last}], "order": [{"column": "id"}],
                             "limit": 4})
        keyset += [r["id"] for r in page["rows"]]
        if not page["truncated"]:
            break
        last = page["rows"][-1]["id"]
    assert seen == keyset == sorted(seen) and len(seen) >= 6
    assert set(shop["orders"]) <= set(seen)


def test_group_by_with_aggregates_having_and_order(harness: Any, shop: Any) -> None:
    rows = harness.rows({"table": "orders", "operation": "select", "group_by": ["status"],
                         "filters": [{"column": "id", "op": "in", "value": shop["orders"]}],
                         "aggregates": [{"fn": "count"}, {"fn": "sum", "column": "total", "as": "revenue"},
                                        {"fn": "avg", "column": "total"}, {"fn": "min", "column": "total"},
                                        {"fn": "max", "column": "total"},
                                        {"fn": "count", "column": "user_id", "distinct": True, "as": "buyers"}],
                         "having": [{"column": "count", "op": "gte", "value": 2}],
                         "order": [{"column": "revenue", "direction": "desc"}]})
    assert str(rows[0].pop("avg_total")).startswith("153.33")   # numeric with more digits than a double: a string
    assert rows == [
        {"status": "paid", "count": 3, "revenue": 460, "min_total": 120, "max_total": 180, "buyers": 3},
        {"status": "new", "count": 2, "revenue": 9.5, "avg_total": 4.75, "min_total": 0, "max_total": 9.5,
         "buyers": 2}]
    totals = harness.rows({"table": "orders", "operation": "select", "aggregates": [{"fn": "count"}],
                           "filters": [{"column": "status", "op": "eq", "value": "paid"}]})
    assert totals == [{"count": 3}]
    with pytest.raises(InvalidQuery, match="'sum' needs a numeric column; 'status' is text"):
        harness.rows({"table": "orders", "operation": "select", "aggregates": [{"fn": "sum", "column": "status"}]})


def test_distinct(harness: Any, shop: Any) -> None:
    rows = harness.rows({"table": "orders", "operation": "select", "columns": ["status"], "distinct": True,
                         "order": [{"column": "status"}]})
    assert rows == [{"status": "new"}, {"status": "paid"}, {"status": "shipped"}]


def test_increment_and_decrement_are_atomic(harness: Any, shop: Any) -> None:
    pid = shop["products"][1]
    [row] = harness.rows({"table": "products", "operation": "update", "data": {"stock": {"decrement": 2}},
                          "filters": [{"column": "id", "op": "eq", "value": pid}], "returning": ["stock"]})
    assert row == {"stock": 0}
    [row] = harness.rows({"table": "products", "operation": "update", "data": {"stock": {"increment": 7}},
                          "filters": [{"column": "id", "op": "eq", "value": pid}], "returning": ["stock"]})
    assert row == {"stock": 7}
    with pytest.raises(InvalidQuery, match="'increment' needs a numeric column"):
        harness.rows({"table": "products", "operation": "update", "data": {"name": {"increment": 1}},
                      "filters": [{"column": "id", "op": "eq", "value": pid}]})


def test_batch_references_earlier_results_in_one_transaction(harness: Any, shop: Any) -> None:
    user = shop["users"][0]
    results = harness.run(harness.engine.batch([
        {"table": "orders", "operation": "insert", "data": {"user_id": user, "status": "new", "total": 89},
         "returning": ["id"]},
        {"table": "order_lines", "operation": "insert", "returning": ["order_id"], "data": [
            {"order_id": {"$ref": "0.id"}, "product_id": shop["products"][0], "quantity": 1},
            {"order_id": {"$ref": "0.id"}, "product_id": shop["products"][2], "quantity": 1}]},
        {"table": "orders", "operation": "select", "columns": ["id", "total"],
         "filters": [{"column": "id", "op": "in", "value": {"$ref": "1.*.order_id"}}]},
    ], harness.call()))
    order_id = results[0]["rows"][0]["id"]
    assert [r["order_id"] for r in results[1]["rows"]] == [order_id, order_id]
    assert results[2]["rows"] == [{"id": order_id, "total": 89}]
    count_before = harness.rows({"table": "orders", "operation": "select", "count": "exact", "limit": 0})["count"]
    with pytest.raises(InvalidQuery, match=r"batch\[1\]\.data\.user_id: \$ref '0\.user_id' found no row: "
                                           r"batch\[0\] returned 0 rows"):
        harness.run(harness.engine.batch([
            {"table": "orders", "operation": "update", "data": {"status": "x"}, "returning": ["user_id"],
             "filters": [{"column": "id", "op": "eq", "value": -1}]},
            {"table": "orders", "operation": "insert", "data": {"user_id": {"$ref": "0.user_id"}}},
        ], harness.call()))
    with pytest.raises(InvalidQuery, match=r"batch\[1\]\.data\.user_id: \$ref '2\.id' points at batch\[2\], "
                                           r"which does not run before this query"):
        harness.run(harness.engine.batch([
            {"table": "orders", "operation": "insert", "data": {"user_id": user}},
            {"table": "orders", "operation": "insert", "data": {"user_id": {"$ref": "2.id"}}},
            {"table": "orders", "operation": "insert", "data": {"user_id": user}},
        ], harness.call()))
    with pytest.raises(InvalidQuery, match=r"batch\[0\]\.data\.user_id: \$ref '1\.id': the first query"):
        harness.run(harness.engine.batch([
            {"table": "orders", "operation": "insert", "data": {"user_id": {"$ref": "1.id"}}},
        ], harness.call()))
    with pytest.raises(InvalidQuery, match=r"only works inside ctx\.db\.batch"):
        harness.query({"table": "orders", "operation": "insert", "data": {"user_id": {"$ref": "0.id"}}})
    after = harness.rows({"table": "orders", "operation": "select", "count": "exact", "limit": 0})["count"]
    assert after == count_before


def test_views_read_like_tables_and_their_cache_follows_base_table_writes(harness: Any, shop: Any) -> None:
    schema = harness.run(harness.engine.refresh_schema())
    assert schema.tables["product_sales"].kind == "view"
    assert set(schema.tables["product_sales"].base_tables) == {"products", "order_lines"}
    assert schema.tables["product_names"].kind == "materialized_view"
    query = {"table": "product_sales", "operation": "select", "columns": ["name", "units"],
             "filters": [{"column": "product_id", "op": "eq", "value": shop["products"][4]}], "cache": {"ttl_s": 60}}
    assert harness.rows(query) == [{"name": "Shoe laces", "units": 2}]
    assert harness.rows(query) == [{"name": "Shoe laces", "units": 2}]
    assert db_spans(harness)[-1].attrs["cache"] == "HIT"
    harness.rows({"table": "order_lines", "operation": "insert", "returning": [],
                  "data": {"order_id": shop["orders"][5], "product_id": shop["products"][4], "quantity": 5}})
    assert harness.rows(query) == [{"name": "Shoe laces", "units": 7}]
    assert db_spans(harness)[-1].attrs["cache"] == "MISS"
    big = harness.rows({"table": "big_orders", "operation": "select", "count": "exact", "limit": 0,
                        "filters": [{"column": "id", "op": "in", "value": shop["orders"]}]})
    assert big["count"] == 3
    # A materialized view is a snapshot taken when the migration ran (before these rows): readable, and empty.
    assert harness.rows({"table": "product_names", "operation": "select", "aggregates": [{"fn": "count"}]}) == [
        {"count": 0}]


def test_index_definitions_keep_desc(harness: Any, shop: Any) -> None:
    schema = harness.run(harness.engine.refresh_schema())
    index = next(ix for ix in schema.tables["order_lines"].indexes if ix.name == "order_lines_order_id_idx")
    assert index.descending == (False, True)
    assert index.definition.endswith("(order_id, id DESC)")
    graph = schema.to_graph()
    entry = next(ix for t in graph["tables"] for ix in t["indexes"] if ix["name"] == "order_lines_order_id_idx")
    assert entry["descending"] == [False, True] and "id DESC" in entry["definition"]


def test_repeated_selects_on_views_never_break_the_schema_graph_or_the_advisor(harness: Any, shop: Any,
                                                                               migrated_dsn: str) -> None:
    """The issue's failure: a repeated select on a GROUP BY view made every advice call fail on CREATE INDEX."""
    from functions.engine.advice import PostgresAdvice, index_candidates

    before = len(db_spans(harness))
    for n in range(6):
        harness.rows({"table": "product_sales", "operation": "select",
                      "filters": [{"column": "units", "op": "gt", "value": n}]})
        harness.rows({"table": "big_orders", "operation": "select",
                      "filters": [{"column": "status", "op": "eq", "value": "paid"}]})
        harness.rows({"table": "product_names", "operation": "select",
                      "filters": [{"column": "name", "op": "eq", "value": f"p{n}"}]})
    spans = db_spans(harness)[before:]
    advice = PostgresAdvice(migrated_dsn, recent_spans=lambda: spans)
    candidates = index_candidates(spans, advice.schema(), slow_query_ms=100, n_plus_one_threshold=5)
    # the filtering view's candidate moves to its base table; the GROUP BY view's (renamed columns) is dropped;
    # the materialized view is a real relation and keeps its own
    assert {(c.table, c.columns) for c in candidates} == {("orders", ("status",)), ("product_names", ("name",))}
    graph = advice.schema_graph()                      # no "cannot create index on relation" any more
    tables = {t["name"]: t for t in graph["tables"]}
    assert tables["product_sales"]["kind"] == "view"
    assert set(tables["product_sales"]["base_tables"]) == {"products", "order_lines"}
    suggested = advice.suggest_indexes(spans)
    assert all(s["table"] in ("orders", "product_names") for s in suggested + graph["suggested_indexes"])
