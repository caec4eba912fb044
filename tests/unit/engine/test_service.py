"""DataEngine over a fake executor: spans, truncation, cache, batch rollback marking, no SQL for bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from functions.engine.executor import Executor, Outcome, Runner, Statement
from functions.engine.schema import Schema
from functions.engine.service import DataEngine, EngineSettings
from functions.shared.context import CallContext
from functions.shared.errors import FunctionTimeout, InvalidQuery
from functions.shared.spans import MemorySink


class FakeExecutor(Executor):
    def __init__(self, schema: Schema, rows: list[dict[str, Any]] | None = None) -> None:
        self.schema = schema
        self.rows = rows if rows is not None else [{"id": 1}]
        self.statements: list[Statement] = []
        self.introspections = 0
        self.fail_on: int | None = None     # index of the statement that raises
        self.committed = 0
        self.rolled_back = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(self, statement: Statement) -> Outcome:
        self.statements.append(statement)
        if self.fail_on is not None and len(self.statements) - 1 == self.fail_on:
            raise FunctionTimeout("query on 'orders' was cancelled after the statement timeout of 5 ms")
        return Outcome(rows=list(self.rows), rowcount=len(self.rows))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Runner]:
        try:
            yield self
        except BaseException:
            self.rolled_back += 1
            raise
        self.committed += 1

    async def introspect(self) -> Schema:
        self.introspections += 1
        return self.schema


def call(sink: MemorySink) -> CallContext:
    return CallContext(trace_id="a" * 32, parent_span_id="b" * 16, function="list_orders", sink=sink)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_query_returns_rows_and_emits_one_db_span(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema, [{"id": 1, "total": __import__("decimal").Decimal("9.50")}])
    engine = DataEngine(fake, EngineSettings(slow_query_ms=100))
    result = run(engine.query({"table": "orders", "operation": "select", "limit": 10,
                               "filters": [{"column": "status", "op": "eq", "value": "paid"}],
                               "order": [{"column": "created_at", "direction": "desc"}]}, call(sink)))
    assert result == {"rows": [{"id": 1, "total": 9.5}], "truncated": False}
    [span] = sink.spans
    assert (span.trace_id, span.parent_span_id, span.kind, span.name, span.status) == \
        ("a" * 32, "b" * 16, "db", "select orders", "ok")
    assert span.attrs == {
        "function": "list_orders", "table": "orders", "operation": "select", "rows": 1, "cache": "BYPASS",
        "sql_shape": 'SELECT * FROM "orders" WHERE "status" = ? ORDER BY "created_at" DESC LIMIT ?',
        "filter_columns": ["status"], "filter_ops": ["eq"], "order_columns": ["created_at"], "truncated": False,
        "slow": False}
    assert fake.statements[0].params == ["paid", 11]


def test_more_rows_than_the_limit_means_truncated(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema, [{"id": i} for i in range(4)])
    engine = DataEngine(fake)
    result = run(engine.query({"table": "orders", "operation": "select", "limit": 3}, call(sink)))
    assert result["truncated"] is True and [r["id"] for r in result["rows"]] == [0, 1, 2]
    assert sink.spans[0].attrs["truncated"] is True and sink.spans[0].attrs["rows"] == 3


def test_hostile_input_never_reaches_the_executor_and_leaves_an_error_span(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema)
    engine = DataEngine(fake)
    run(engine.refresh_schema())
    hostile = [{"table": "users; drop table x", "operation": "select"},
               {"table": "pg_catalog.pg_authid", "operation": "select"},
               {"table": "orders", "operation": "select", "limit": 10**9},
               {"table": "orders", "operation": "select", "filters": [{"column": "nope", "op": "eq", "value": 1}]}]
    for raw in hostile:
        with pytest.raises(InvalidQuery):
            run(engine.query(raw, call(sink)))
    assert fake.statements == [] and fake.introspections == 1
    assert [s.status for s in sink.spans] == ["error"] * 4
    assert sink.spans[0].name == "select ?" and sink.spans[0].attrs["error.code"] == "invalid_query"
    assert sink.spans[3].name == "select orders"


def test_cache_miss_then_hit_and_a_write_invalidates(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema)
    engine = DataEngine(fake)
    cached = {"table": "orders", "operation": "select", "cache": {"ttl_s": 60}}
    run(engine.query(cached, call(sink)))
    run(engine.query(cached, call(sink)))
    run(engine.query({"table": "orders", "operation": "select"}, call(sink)))
    run(engine.query({"table": "orders", "operation": "insert", "data": {"user_id": 1, "status": "new"}},
                     call(sink)))
    run(engine.query(cached, call(sink)))
    assert [s.attrs["cache"] for s in sink.spans] == ["MISS", "HIT", "BYPASS", "BYPASS", "MISS"]
    assert len(fake.statements) == 4


def test_a_database_error_is_raised_and_recorded_on_the_span(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema)
    fake.fail_on = 0
    engine = DataEngine(fake)
    with pytest.raises(FunctionTimeout):
        run(engine.query({"table": "orders", "operation": "select"}, call(sink)))
    [span] = sink.spans
    assert span.status == "error" and span.attrs["error.code"] == "function_timeout"
    assert span.attrs["sql_shape"] == 'SELECT * FROM "orders" LIMIT ?'


def test_batch_runs_in_one_transaction_with_one_span_per_query(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema)
    engine = DataEngine(fake)
    results = run(engine.batch([
        {"table": "orders", "operation": "insert", "data": {"user_id": 1, "status": "new"}},
        {"table": "orders", "operation": "select", "cache": {"ttl_s": 5}}], call(sink)))
    assert len(results) == 2 and fake.committed == 1
    assert [s.name for s in sink.spans] == ["insert orders", "select orders"]
    assert all(s.attrs["batch"] is True and s.attrs["cache"] == "BYPASS" for s in sink.spans)


def test_a_failed_batch_marks_earlier_spans_rolled_back(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema)
    fake.fail_on = 1
    engine = DataEngine(fake)
    with pytest.raises(FunctionTimeout):
        run(engine.batch([{"table": "orders", "operation": "insert", "data": {"user_id": 1, "status": "x"}},
                          {"table": "orders", "operation": "select"},
                          {"table": "orders", "operation": "select"}], call(sink)))
    assert fake.rolled_back == 1 and len(fake.statements) == 2
    assert [(s.status, s.attrs.get("rolled_back")) for s in sink.spans] == [("ok", True), ("error", None)]


def test_an_invalid_query_in_a_batch_stops_it_before_any_sql(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema)
    engine = DataEngine(fake)
    with pytest.raises(InvalidQuery, match=r"batch\[1\]\.filters\[0\]\.column: unknown column 'nope'"):
        run(engine.batch([{"table": "orders", "operation": "select"},
                          {"table": "orders", "operation": "select",
                           "filters": [{"column": "nope", "op": "eq", "value": 1}]}], call(sink)))
    assert fake.statements == []
    assert [s.name for s in sink.spans] == ["batch"] and sink.spans[0].status == "error"


def test_the_schema_is_read_once_and_again_when_older_than_its_ttl(schema: Schema) -> None:
    now = [0.0]
    fake = FakeExecutor(schema)
    engine = DataEngine(fake, EngineSettings(schema_ttl_s=30), clock=lambda: now[0])
    sink = MemorySink()
    run(engine.query({"table": "orders", "operation": "select"}, call(sink)))
    run(engine.query({"table": "orders", "operation": "select"}, call(sink)))
    assert fake.introspections == 1
    now[0] = 31.0
    run(engine.query({"table": "orders", "operation": "select"}, call(sink)))
    assert fake.introspections == 2


def test_span_attrs_separate_required_conditions_from_or_branches_and_name_embeds(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema, [{"id": 1}])
    engine = DataEngine(fake)
    run(engine.query({"table": "users", "operation": "select", "columns": ["id"], "filters": [
        {"column": "active", "op": "eq", "value": True},
        {"or": [{"column": "email", "op": "eq", "value": "a"}, {"column": "name", "op": "ilike", "value": "a%"}]},
        {"column": "profile", "op": "eq", "path": ["plan"], "value": "pro"}],
        "embed": {"orders": {"table": "orders", "columns": ["id"]}}}, call(sink)))
    [span] = sink.spans
    assert span.attrs["filter_columns"] == ["active", "profile"]
    assert span.attrs["filter_ops"] == ["eq", "path_eq"]          # the advisor ignores path comparisons
    assert span.attrs["filter_any_columns"] == ["email", "name"]
    assert span.attrs["embeds"] == ["orders:orders"]
    assert len(fake.statements) == 1 and "LATERAL" in fake.statements[0].sql


def test_an_equality_on_a_foreign_key_column_records_the_embed_hint(schema: Schema) -> None:
    sink = MemorySink()
    engine = DataEngine(FakeExecutor(schema))
    run(engine.query({"table": "orders", "operation": "select",
                      "filters": [{"column": "user_id", "op": "eq", "value": 3}]}, call(sink)))
    run(engine.query({"table": "users", "operation": "select",
                      "filters": [{"column": "id", "op": "eq", "value": 3}]}, call(sink)))
    assert sink.spans[0].attrs["embed_hints"] == [
        {"table": "users", "embed_table": "orders", "column": "user_id", "via": "user_id", "many": True}]
    assert sink.spans[1].attrs["embed_hints"] == [
        {"table": "orders", "embed_table": "users", "column": "id", "via": "user_id", "many": False}]


def test_count_and_page_come_back_as_one_object_and_the_markers_are_dropped(schema: Schema) -> None:
    rows = [{"__flux_total": 7, "__flux_row": 1, "id": 1}, {"__flux_total": 7, "__flux_row": 2, "id": 2},
            {"__flux_total": 7, "__flux_row": 3, "id": 3}]
    sink, fake = MemorySink(), FakeExecutor(schema, rows)
    engine = DataEngine(fake)
    result = run(engine.query({"table": "orders", "operation": "select", "columns": ["id"], "count": "exact",
                               "limit": 2, "offset": 4}, call(sink)))
    assert result["rows"] == {"rows": [{"id": 1}, {"id": 2}], "count": 7, "truncated": True, "next_offset": 6}
    assert sink.spans[0].attrs["rows"] == 2 and sink.spans[0].attrs["count"] == "exact"
    fake.rows = [{"__flux_total": 7, "__flux_row": None, "id": None}]     # offset past the end: only the count
    result = run(engine.query({"table": "orders", "operation": "select", "count": "exact", "offset": 50},
                              call(sink)))
    assert result["rows"] == {"rows": [], "count": 7, "truncated": False, "next_offset": None}
    fake.rows = [{"id": 1}, {"id": 2}]
    result = run(engine.query({"table": "orders", "operation": "select", "page": True, "limit": 5}, call(sink)))
    assert result["rows"] == {"rows": [{"id": 1}, {"id": 2}], "truncated": False, "next_offset": None}


def test_a_cached_select_on_a_view_is_dropped_when_a_base_table_is_written(schema: Schema) -> None:
    from functions.engine.schema import Table

    orders = schema.tables["orders"]
    view = Table("paid_orders", {"id": orders.columns["id"]}, kind="view", base_tables=("orders",))
    with_view = Schema(tables={**schema.tables, "paid_orders": view})
    sink, fake = MemorySink(), FakeExecutor(with_view, [{"id": 1}])
    engine = DataEngine(fake)
    cached = {"table": "paid_orders", "operation": "select", "cache": {"ttl_s": 60}}
    run(engine.query(cached, call(sink)))
    run(engine.query(cached, call(sink)))
    run(engine.query({"table": "orders", "operation": "update", "data": {"status": "paid"},
                      "filters": [{"column": "id", "op": "eq", "value": 1}]}, call(sink)))
    run(engine.query(cached, call(sink)))
    assert [s.attrs["cache"] for s in sink.spans] == ["MISS", "HIT", "BYPASS", "MISS"]
    # and an embed's tables count too: writing users drops a cached orders-with-users select
    embedded = {"table": "orders", "operation": "select", "cache": {"ttl_s": 60},
                "embed": {"user": {"table": "users", "columns": ["id"]}}}
    run(engine.query(embedded, call(sink)))
    run(engine.query({"table": "users", "operation": "delete", "filters": [{"column": "id", "op": "eq", "value": 9}]},
                     call(sink)))
    run(engine.query(embedded, call(sink)))
    assert [s.attrs["cache"] for s in sink.spans[-3:]] == ["MISS", "BYPASS", "MISS"]


def test_batch_references_are_bound_from_the_earlier_rows_before_the_statement_runs(schema: Schema) -> None:
    sink, fake = MemorySink(), FakeExecutor(schema, [{"id": 41}, {"id": 42}])
    engine = DataEngine(fake)
    run(engine.batch([
        {"table": "users", "operation": "insert", "data": [{"email": "a"}, {"email": "b"}]},
        {"table": "orders", "operation": "insert", "data": {"user_id": {"$ref": "0.1.id"}, "status": "new"}},
        {"table": "orders", "operation": "delete", "filters": [{"column": "user_id", "op": "in",
                                                                "value": {"$ref": "0.*.id"}}]},
    ], call(sink)))
    assert fake.statements[1].params[0] == 42
    assert 'VALUES (%s::"pg_catalog"."int8", %s)' in fake.statements[1].sql
    assert fake.statements[2].params[0] == [41, 42]
    # the reference is a placeholder in the shape: its value never enters the SQL
    assert sink.spans[1].attrs["sql_shape"] == \
        'INSERT INTO "orders" ("user_id", "status") VALUES (?::"pg_catalog"."int8", ?) RETURNING *'
