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
