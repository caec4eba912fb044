"""Failure paths on a real server: rollback, statement timeout, database down, caller errors, hostile input."""

from __future__ import annotations

import socket
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from functions.engine.executor import Executor, Outcome, Statement
from functions.engine.schema import Schema
from functions.engine.service import DataEngine
from functions.shared.context import CallContext
from functions.shared.errors import DatabaseUnavailable, FunctionTimeout, InvalidQuery
from functions.shared.spans import MemorySink

pytestmark = pytest.mark.integration


def test_a_failing_batch_rolls_back_every_query(harness) -> None:  # type: ignore[no-untyped-def]
    before = harness.rows({"table": "users", "operation": "select", "columns": ["email"]})
    harness.sink.spans.clear()
    with pytest.raises(InvalidQuery, match="duplicate key value violates unique constraint"):
        harness.run(harness.engine.batch([
            {"table": "users", "operation": "insert", "data": {"email": "first@example.com"}},
            {"table": "users", "operation": "insert", "data": {"email": "first@example.com"}},
        ], harness.call()))
    assert harness.rows({"table": "users", "operation": "select", "columns": ["email"]}) == before
    statuses = [(s.status, s.attrs.get("rolled_back"), s.attrs.get("error.code")) for s in harness.sink.spans[:2]]
    assert statuses == [("ok", True, None), ("error", None, "invalid_query")]


def test_statement_timeout_is_504_and_the_pool_stays_healthy(harness) -> None:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(3):   # more timeouts than the pool's minimum size: each connection survives its cancel
        with pytest.raises(FunctionTimeout) as caught:
            harness.query({"table": "slow_rows", "operation": "select"})
    assert caught.value.status == 504 and caught.value.code == "function_timeout"
    assert "statement timeout of 300 ms" in caught.value.message
    assert time.perf_counter() - started < 3 * 0.9  # cancelled at 300 ms, never the full second
    for _ in range(10):
        assert harness.rows({"table": "users", "operation": "select", "limit": 1}) is not None
    stats = harness.engine.executor.pool.get_stats()  # type: ignore[attr-defined]
    assert stats.get("connections_lost", 0) == 0 and stats.get("returns_bad", 0) == 0


def test_caller_mistakes_found_by_postgres_are_400(harness) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidQuery, match=r"violates foreign key constraint .*\(Key \(user_id\)=\(999999\)"):
        harness.query({"table": "orders", "operation": "insert", "data": {"user_id": 999999}})
    with pytest.raises(InvalidQuery, match="invalid input syntax for type timestamp with time zone"):
        harness.query({"table": "users", "operation": "select",
                       "filters": [{"column": "created_at", "op": "gt", "value": "yesterday-ish"}]})
    with pytest.raises(InvalidQuery, match="value too long for type character varying"):
        harness.query({"table": "users", "operation": "insert", "data": {"email": "x" * 300}})


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])   # closed again on exit: nothing listens there


def test_database_down_is_a_quick_503_with_retry_after(harness) -> None:  # type: ignore[no-untyped-def]
    engine = DataEngine.create(f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres", connect_timeout_s=0.5)
    sink = MemorySink()
    call = CallContext(trace_id="d" * 32, parent_span_id=None, function="f", sink=sink)

    async def attempt() -> None:
        await engine.open()
        try:
            await engine.query({"table": "users", "operation": "select"}, call)
        finally:
            await engine.close()

    started = time.perf_counter()
    with pytest.raises(DatabaseUnavailable) as caught:
        harness.run(attempt())
    assert time.perf_counter() - started < 2.0
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "5"}
    assert "127.0.0.1" not in caught.value.message and "postgres@" not in caught.value.message
    assert sink.spans[0].status == "error" and sink.spans[0].attrs["error.code"] == "database_unavailable"


class SpyExecutor(Executor):
    """Counts every statement that would reach Postgres; delegates to the real executor."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.statements: list[Statement] = []
        self.transactions = 0

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def run(self, statement: Statement) -> Outcome:
        self.statements.append(statement)
        return await self.inner.run(statement)

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        self.transactions += 1
        return self.inner.transaction()

    async def introspect(self) -> Schema:
        return await self.inner.introspect()


HOSTILE: list[tuple[str, Any]] = [
    ("statement in a table name", {"table": "users; drop table x", "operation": "select"}),
    ("quoted table name", {"table": '"users"', "operation": "select"}),
    ("quoted column name", {"table": "users", "operation": "select", "columns": ['"email"']}),
    ("catalog table", {"table": "pg_catalog.pg_authid", "operation": "select"}),
    ("catalog table unqualified", {"table": "pg_authid", "operation": "select"}),
    ("64-byte name", {"table": "u" * 64, "operation": "select"}),
    ("NUL byte", {"table": "users", "operation": "select",
                  "filters": [{"column": "email", "op": "eq", "value": "a\x00' OR '1'='1"}]}),
    ("100,000-element in", {"table": "users", "operation": "select",
                            "filters": [{"column": "id", "op": "in", "value": list(range(100_000))}]}),
    ("limit 10**9", {"table": "users", "operation": "select", "limit": 10**9}),
    ("out-of-range number", {"table": "users", "operation": "select",
                             "filters": [{"column": "age", "op": "eq", "value": 10**30}]}),
    ("unknown operator", {"table": "users", "operation": "select",
                          "filters": [{"column": "id", "op": "; DELETE FROM users", "value": 1}]}),
    ("delete without filters", {"table": "users", "operation": "delete"}),
    ("batch with one bad query", [{"table": "users", "operation": "insert", "data": {"email": "z@example.com"}},
                                  {"table": "users; drop table x", "operation": "select"}]),
]


@pytest.mark.parametrize(("case", "raw"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_400_and_no_sql_runs(harness, case: str, raw: Any) -> None:  # type: ignore[no-untyped-def]
    spy = SpyExecutor(harness.engine.executor)
    engine = DataEngine(spy, harness.engine.settings)
    harness.run(engine.refresh_schema())
    sink = MemorySink()
    call = CallContext(trace_id="h" * 32, parent_span_id=None, function="f", sink=sink)
    with pytest.raises(InvalidQuery) as caught:
        harness.run(engine.batch(raw, call) if isinstance(raw, list) else engine.query(raw, call))
    assert caught.value.status == 400 and caught.value.code == "invalid_query"
    assert spy.statements == [] and spy.transactions == 0
    assert [s.status for s in sink.spans] == ["error"]
    # and the tables are all still there
    assert harness.rows({"table": "users", "operation": "select", "limit": 1}) is not None
