"""``ctx.db`` in a Lambda: the Data Engine, built on the first query instead of at cold start.

A runtime Lambda whose function never touches the database must not pay for it,
and must not fail because of it: reading the database secret (a Secrets Manager
call) and opening the pool happen on the first ``ctx.db`` call. If that fails
(the secret is unreadable, malformed, the proxy is down) only that query fails,
with ``503 database_unavailable``; the next query tries again, at most once per
:data:`RETRY_AFTER_S` (in between the same error is answered at once, so a broken
secret does not turn every request into a Secrets Manager call).

A ``503`` from the engine itself (its pool got no connection) is handed to ``explain``, which may
replace it with a more useful one: a runtime deployed before its first migrate finds no
application role, and the answer should say to run ``flux db migrate --stage <s>``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from functions.shared.context import CallContext
from functions.shared.errors import DatabaseUnavailable, FluxError

RETRY_AFTER_S = 5.0


class LazyDatabase:
    """The :class:`functions.runtime.ports.DbService` of a Lambda; ``build`` makes and opens the engine."""

    def __init__(self, build: Callable[[], Awaitable[Any]], *, clock: Callable[[], float] = time.monotonic,
                 retry_after_s: float = RETRY_AFTER_S,
                 explain: Callable[[Any, DatabaseUnavailable], Awaitable[FluxError]] | None = None) -> None:
        self._build = build
        self._explain = explain
        self._clock = clock
        self._retry_after_s = retry_after_s
        self._engine: Any = None
        self._failure: tuple[float, FluxError] | None = None
        self._lock = asyncio.Lock()

    @property
    def started(self) -> bool:
        return self._engine is not None

    async def engine(self) -> Any:
        if self._engine is not None:
            return self._engine
        async with self._lock:
            if self._engine is not None:
                return self._engine
            if self._failure is not None and self._clock() - self._failure[0] < self._retry_after_s:
                raise self._failure[1]
            try:
                self._engine = await self._build()
            except FluxError as exc:
                self._failure = (self._clock(), exc)
                raise
            self._failure = None
            return self._engine

    async def query(self, query: Any, call: CallContext) -> dict[str, Any]:
        engine = await self.engine()
        try:
            return await engine.query(query, call)
        except DatabaseUnavailable as exc:
            raise await self._explained(engine, exc) from None

    async def batch(self, queries: Any, call: CallContext) -> list[dict[str, Any]]:
        engine = await self.engine()
        try:
            return await engine.batch(queries, call)
        except DatabaseUnavailable as exc:
            raise await self._explained(engine, exc) from None

    async def _explained(self, engine: Any, exc: DatabaseUnavailable) -> FluxError:
        if self._explain is None:
            return exc
        return await self._explain(engine, exc)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.close()
            self._engine = None
