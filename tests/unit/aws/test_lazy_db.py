"""``ctx.db`` in a Lambda connects on first use; a failure fails that query only and is retried later."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from functions.aws.lazy_db import LazyDatabase
from functions.shared.context import CallContext
from functions.shared.errors import DatabaseUnavailable
from functions.shared.spans import MemorySink

CALL = CallContext("a" * 32, "b" * 16, "fn", "a" * 32, MemorySink())


class Engine:
    def __init__(self) -> None:
        self.closed = False

    async def query(self, query: Any, call: CallContext) -> dict[str, Any]:
        return {"rows": [query], "truncated": False}

    async def batch(self, queries: Any, call: CallContext) -> list[dict[str, Any]]:
        return [{"rows": [q], "truncated": False} for q in queries]

    async def close(self) -> None:
        self.closed = True


def test_nothing_is_built_until_the_first_query_and_then_once() -> None:
    builds: list[Engine] = []

    async def build() -> Engine:
        builds.append(Engine())
        return builds[-1]

    async def scenario() -> None:
        db = LazyDatabase(build)
        assert not db.started and builds == []
        results = await asyncio.gather(*(db.query({"n": i}, CALL) for i in range(5)))
        assert [r["rows"] for r in results] == [[{"n": i}] for i in range(5)]
        assert (await db.batch([1, 2], CALL))[1]["rows"] == [2]
        assert len(builds) == 1
        await db.close()
        assert builds[0].closed

    asyncio.run(scenario())


def test_a_failed_build_fails_queries_until_the_retry_interval_passes() -> None:
    now = [0.0]
    attempts: list[float] = []

    async def build() -> Engine:
        attempts.append(now[0])
        if len(attempts) == 1:
            raise DatabaseUnavailable("database unavailable: cannot read the database secret (AccessDenied)")
        return Engine()

    async def scenario() -> None:
        db = LazyDatabase(build, clock=lambda: now[0], retry_after_s=5)
        for at in (0.0, 4.9):
            now[0] = at
            with pytest.raises(DatabaseUnavailable, match="AccessDenied"):
                await db.query({}, CALL)
        assert attempts == [0.0]   # the remembered failure answered the second query
        now[0] = 5.1
        assert (await db.query({"ok": 1}, CALL))["rows"] == [{"ok": 1}]
        assert attempts == [0.0, 5.1]

    asyncio.run(scenario())
