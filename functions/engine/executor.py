"""The executor port and its psycopg_pool adapter: where compiled SQL meets Postgres.

The port is small on purpose (run one statement; run several in one transaction;
introspect) so tests can put a spy or a fake in its place and prove, for example, that
a hostile query never reached it. The adapter owns the database facts:

- every statement runs under ``statement_timeout``, set without libpq startup ``options``
  (RDS Proxy refuses any startup parameter but ``user``, ``database``,
  ``application_name`` and ``client_encoding``). Two ways, by ``proxy_safe``:

  * ``False`` (``flux dev``, direct connections): one ``SET statement_timeout`` per new
    pooled connection, in the pool's configure callback; no cost per query;
  * ``True`` (every Lambda, where the server may be behind RDS Proxy): ``SET LOCAL`` inside
    each statement's own transaction, and psycopg's automatic server-side prepared
    statements off (``prepare_threshold=None``). A session-level ``SET`` or a prepared
    statement pins the client to one database connection for the rest of its session,
    which defeats the proxy's pooling; ``SET LOCAL`` ends with its transaction and does
    not. It costs three extra round trips per statement outside a batch (BEGIN, SET
    LOCAL, COMMIT), one per batch.

  A cancelled statement becomes :class:`FunctionTimeout` (504) and the connection goes
  back to the pool healthy;
- getting a connection is bounded by ``connect_timeout_s``; an unreachable server is
  :class:`DatabaseUnavailable` (503) with ``Retry-After``;
- errors that are the caller's (bad value for a type, unique/foreign-key violations,
  a stale column) become :class:`InvalidQuery` (400) with Postgres' own explanation;
- a statement the application role may not run (SQLSTATE 42501, e.g. a table a migration
  revoked) is :class:`PermissionDenied` (403 ``permission_denied``) naming the table.
  Connection strings never appear in messages.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import JsonbBinaryLoader, JsonBinaryLoader, JsonbLoader, JsonLoader
from psycopg.types.numeric import NumericLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from functions.engine.errors import DatabaseUnavailable, EngineError, FunctionTimeout, InvalidQuery, PermissionDenied
from functions.engine.introspect import load_schema_async
from functions.engine.schema import Schema
from functions.engine.values import JsonDocument
from functions.shared.errors import FluxError

_log = logging.getLogger("flux.engine")

@dataclass(frozen=True, slots=True)
class Statement:
    """One rendered statement: SQL text with ``%s`` placeholders, its parameters, the row cap."""

    sql: str
    params: Sequence[Any] = ()
    max_rows: int = 1000
    table: str = ""
    bounded: bool = False   # the SQL itself returns at most max_rows + 1 rows (a select with LIMIT)


@dataclass(slots=True)
class Outcome:
    """At most ``max_rows + 1`` rows (the extra one tells the caller the result was truncated)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rowcount: int = 0


class Runner(ABC):
    @abstractmethod
    async def run(self, statement: Statement) -> Outcome: ...


class Executor(Runner):
    """Port: runs statements against the database."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def transaction(self) -> Any:
        """An async context manager yielding a :class:`Runner`; commits on exit, rolls back on error."""

    @abstractmethod
    async def introspect(self) -> Schema: ...


class PsycopgExecutor(Executor):
    def __init__(self, dsn: str, *, statement_timeout_ms: int = 5000, connect_timeout_s: float = 5.0,
                 min_size: int = 1, max_size: int = 10, retry_after_s: int = 5,
                 application_name: str = "flux-engine", proxy_safe: bool = False) -> None:
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_timeout_s = connect_timeout_s
        self.retry_after_s = retry_after_s
        self.proxy_safe = proxy_safe
        self._set_timeout = timeout_statement(statement_timeout_ms, local=proxy_safe)
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": max(2, math.ceil(connect_timeout_s)),  # libpq's own floor is 2 s
            "application_name": application_name,
        }
        if proxy_safe:
            kwargs["prepare_threshold"] = None
        self.pool: AsyncConnectionPool = AsyncConnectionPool(
            dsn, kwargs=kwargs, min_size=min_size, max_size=max_size, timeout=connect_timeout_s,
            open=False, name="flux-engine", configure=self._configure)

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        _register_loaders(conn)
        if not self.proxy_safe:
            await conn.execute(self._set_timeout)

    async def open(self) -> None:
        # wait=False: the engine may start before the database is reachable; queries then 503.
        await self.pool.open(wait=False)

    async def login_error(self) -> psycopg.Error | None:
        """One connection outside the pool: None when it logs in, else libpq's error.

        The pool only reports that no connection came in time; when that happens the caller asks
        here why (a role that does not exist yet is fixed by migrating, an outage is not).
        """
        try:
            conn = await psycopg.AsyncConnection.connect(self.pool.conninfo, **{
                k: v for k, v in self.pool.kwargs.items() if k in ("connect_timeout", "application_name")})
        except psycopg.Error as exc:
            return exc
        await conn.close()
        return None

    async def close(self) -> None:
        await self.pool.close()

    async def run(self, statement: Statement) -> Outcome:
        try:
            async with self.pool.connection() as conn:
                if not self.proxy_safe:
                    return await _execute(conn, statement)
                async with conn.transaction():
                    await conn.execute(self._set_timeout)
                    return await _execute(conn, statement)
        except FluxError:
            raise
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.translate(exc, statement.table) from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Runner]:
        try:
            async with self.pool.connection() as conn, conn.transaction():
                if self.proxy_safe:
                    await conn.execute(self._set_timeout)
                yield _TransactionRunner(conn, self)
        except FluxError:
            raise
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.translate(exc, "") from None

    async def introspect(self) -> Schema:
        try:
            async with self.pool.connection() as conn:
                return await load_schema_async(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.translate(exc, "") from None

    def translate(self, exc: BaseException, table: str) -> FluxError:
        return translate_error(exc, table, statement_timeout_ms=self.statement_timeout_ms,
                               connect_timeout_s=self.connect_timeout_s, retry_after_s=self.retry_after_s)


class _TransactionRunner(Runner):
    def __init__(self, conn: psycopg.AsyncConnection[Any], owner: PsycopgExecutor) -> None:
        self.conn = conn
        self.owner = owner

    async def run(self, statement: Statement) -> Outcome:
        try:
            return await _execute(self.conn, statement)
        except psycopg.Error as exc:
            raise self.owner.translate(exc, statement.table) from exc


def _document_loader(base: type[Any]) -> type[Any]:
    class DocumentLoader(base):  # type: ignore[misc, valid-type]
        def load(self, data: Any) -> JsonDocument:
            return JsonDocument(super().load(data))

    return DocumentLoader


class ShortNumericLoader(NumericLoader):
    """numeric text → int/float when that is exact, else Decimal (what values.to_json would decide anyway).

    A decimal of at most 15 significant digits converts to the one double whose shortest repr
    is that decimal, so the float *is* the value; longer ones stay Decimal for the exact check.
    Skipping Decimal for the common case (prices, totals) halves the cost of converting rows.
    """

    def load(self, data: Any) -> Any:
        text = bytes(data)
        digits = len(text) - (text[:1] == b"-") - (b"." in text)
        if digits <= 15 and text[-1:].isdigit():
            if b"." not in text:
                return int(text)
            number = float(text)
            return int(number) if number.is_integer() else number
        return super().load(data)


_DOCUMENT_LOADERS = [("json", _document_loader(JsonLoader)), ("jsonb", _document_loader(JsonbLoader)),
                     ("json", _document_loader(JsonBinaryLoader)), ("jsonb", _document_loader(JsonbBinaryLoader))]


def timeout_statement(statement_timeout_ms: int, *, local: bool) -> sql.Composed:
    """``SET [LOCAL] statement_timeout = <ms>`` (LOCAL: for the current transaction only)."""
    keyword = sql.SQL("SET LOCAL" if local else "SET")
    return sql.SQL("{} statement_timeout = {}").format(keyword, sql.Literal(int(statement_timeout_ms)))


def _register_loaders(conn: psycopg.AsyncConnection[Any]) -> None:
    """Per connection (other code in the process keeps psycopg's defaults): json stays as parsed, numerics fast."""
    for name, loader in _DOCUMENT_LOADERS:
        conn.adapters.register_loader(name, loader)
    conn.adapters.register_loader("numeric", ShortNumericLoader)


async def _execute(conn: psycopg.AsyncConnection[Any], statement: Statement) -> Outcome:
    cur = await conn.execute(statement.sql, statement.params)
    if cur.description is None:
        rows: list[dict[str, Any]] = []
    elif statement.bounded:
        rows = await cur.fetchall()
    else:   # RETURNING of a large write: hand over no more than the caller may see
        rows = await cur.fetchmany(statement.max_rows + 1)
    return Outcome(rows=rows, rowcount=max(cur.rowcount, len(rows)))


_OUTAGES = {"57": "the database server is shutting down or restarting", "53": "the database server is out of resources",
            "": "the connection to the database failed"}
_CALLER_CLASSES = ("22", "23", "42", "44", "55", "2B")   # data, integrity, syntax/access, check option, state
_OUTAGE_CLASSES = ("08", "53", "57P")                    # connection, resources, shutdown


def translate_error(exc: BaseException, table: str, *, statement_timeout_ms: int, connect_timeout_s: float,
                    retry_after_s: int = 5) -> FluxError:
    """Map a psycopg / pool failure to the Flux error a caller should see."""
    retry = {"Retry-After": str(retry_after_s)}
    on = f" on '{table}'" if table else ""
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailable(f"database unavailable: no connection within {connect_timeout_s:g} s; "
                                   "the server may be down or unreachable", headers=retry)
    if isinstance(exc, pg_errors.QueryCanceled):
        return FunctionTimeout(f"query{on} was cancelled after the statement timeout of {statement_timeout_ms} ms; "
                               "add a filter on an indexed column or a smaller limit")
    if isinstance(exc, pg_errors.LockNotAvailable):
        return FunctionTimeout(f"query{on} timed out waiting for a lock")
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return PermissionDenied(f"{_first_line(exc)}: the application role user code runs as has DML rights only "
                                "(select, insert, update, delete on the application's tables)")
    if state.startswith(_OUTAGE_CLASSES) or (isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
                                            and not state):
        # libpq's text names hosts and ports; callers get the kind of outage, operators the full story.
        _log.warning("database unavailable (SQLSTATE %s): %s", state or "-", _first_line(exc))
        return DatabaseUnavailable(f"database unavailable: {_OUTAGES.get(state[:2], _OUTAGES[''])}", headers=retry)
    if state.startswith(_CALLER_CLASSES) or (isinstance(exc, psycopg.DataError | psycopg.ProgrammingError)
                                            and not state):
        diag = getattr(exc, "diag", None)
        detail = getattr(diag, "message_detail", None) if diag is not None else None
        message = f"query{on} failed: {_first_line(exc)}" + (f" ({detail})" if detail else "")
        return InvalidQuery(message)
    _log.error("unexpected database error%s (SQLSTATE %s): %s", on, state or "-", _first_line(exc))
    return EngineError(f"database error{on}" + (f" (SQLSTATE {state})" if state else "") + f": {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
