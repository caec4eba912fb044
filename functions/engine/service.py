"""``DataEngine``: the :class:`functions.runtime.ports.DbService` that ``ctx.db`` calls reach.

One ``query`` is: parse (400 on shape) → compile against the cached live schema (400 on
unknown names or mistyped values) → cache lookup for opted-in selects → execute → rows
made JSON-safe → one ``db`` span to ``call.sink``. The span is written whatever happens,
with ``status: "error"`` and the error's code and message on failure, so a trace always
shows the query that broke a request. ``batch`` runs its queries in one transaction and
marks every span of a rolled-back batch.

The engine runs inside the runtime's event loop (``flux dev`` and each runtime Lambda);
build it with :meth:`DataEngine.create` and ``await open()`` / ``close()`` around use.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from functions.engine import model
from functions.engine.cache import CachedResult, ResultCache
from functions.engine.compiler import compile, max_rows, sql_shape
from functions.engine.executor import Executor, Outcome, PsycopgExecutor, Statement
from functions.engine.model import Query, SelectQuery, parse_batch, parse_query
from functions.engine.schema import Schema
from functions.engine.values import row_to_json
from functions.shared.context import CallContext
from functions.shared.errors import FluxError
from functions.shared.spans import OpenSpan, SafeSink, Span, start_span


@dataclass(frozen=True, slots=True)
class EngineSettings:
    statement_timeout_ms: int = 5000
    slow_query_ms: int = 100
    connect_timeout_s: float = 5.0
    default_limit: int = model.DEFAULT_LIMIT
    max_limit: int = model.MAX_LIMIT
    schema_ttl_s: float | None = None   # re-read the schema when older (set in Lambda, where migrations run elsewhere)
    pool_min: int = 1
    pool_max: int = 10
    cache_max_entries: int = 1000


@dataclass(slots=True)
class _Prepared:
    query: Query
    statement: Statement
    shape: str


class DataEngine:
    def __init__(self, executor: Executor, settings: EngineSettings | None = None, *,
                 cache: ResultCache | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.executor = executor
        self.settings = settings or EngineSettings()
        self.cache = cache or ResultCache(max_entries=self.settings.cache_max_entries)
        self._clock = clock
        self._schema: Schema | None = None
        self._schema_at = 0.0
        self._schema_lock = asyncio.Lock()

    @classmethod
    def create(cls, dsn: str, *, slow_query_ms: int = 100, statement_timeout_ms: int = 5000,
               connect_timeout_s: float = 5.0, pool_min: int = 1, pool_max: int = 10,
               default_limit: int = model.DEFAULT_LIMIT, max_limit: int = model.MAX_LIMIT,
               schema_ttl_s: float | None = None, cache_max_entries: int = 1000) -> DataEngine:
        settings = EngineSettings(statement_timeout_ms=statement_timeout_ms, slow_query_ms=slow_query_ms,
                                  connect_timeout_s=connect_timeout_s, default_limit=default_limit,
                                  max_limit=max_limit, schema_ttl_s=schema_ttl_s, pool_min=pool_min,
                                  pool_max=pool_max, cache_max_entries=cache_max_entries)
        executor = PsycopgExecutor(dsn, statement_timeout_ms=statement_timeout_ms,
                                   connect_timeout_s=connect_timeout_s, min_size=pool_min, max_size=pool_max)
        return cls(executor, settings)

    async def open(self) -> None:
        await self.executor.open()

    async def close(self) -> None:
        await self.executor.close()

    async def __aenter__(self) -> DataEngine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- schema --------------------------------------------------------------------------------------

    async def refresh_schema(self) -> Schema:
        """Re-read the schema now (call after applying migrations)."""
        async with self._schema_lock:
            self._schema = await self.executor.introspect()
            self._schema_at = self._clock()
            return self._schema

    async def schema(self) -> Schema:
        """The cached schema; read on first use and, with ``schema_ttl_s``, when it has aged."""
        schema, ttl = self._schema, self.settings.schema_ttl_s
        if schema is not None and (ttl is None or self._clock() - self._schema_at < ttl):
            return schema
        async with self._schema_lock:
            if self._schema is not None and (ttl is None or self._clock() - self._schema_at < ttl):
                return self._schema
            self._schema = await self.executor.introspect()
            self._schema_at = self._clock()
            return self._schema

    # -- DbService -----------------------------------------------------------------------------------

    async def query(self, query: Any, call: CallContext) -> dict[str, Any]:
        span = _open_span(call, query)
        prepared: _Prepared | None = None
        try:
            parsed = parse_query(query, default_limit=self.settings.default_limit, max_limit=self.settings.max_limit)
            prepared = self._prepare(parsed, await self.schema())
            result, cache_status, count = await self._run_one(prepared)
        except BaseException as exc:  # the span records any failure, even a cancellation, then it propagates
            _emit(call, [_failed(span, exc, prepared)])
            raise
        _emit(call, [self._finished(span, prepared, result, cache_status, count)])
        return result

    async def batch(self, queries: Any, call: CallContext) -> list[dict[str, Any]]:
        try:
            parsed = parse_batch(queries, default_limit=self.settings.default_limit, max_limit=self.settings.max_limit)
            schema = await self.schema()
            prepared = [self._prepare(q, schema, where=f"batch[{i}].") for i, q in enumerate(parsed)]
        except FluxError as exc:
            _emit(call, [_failed(start_span(call.trace_id, call.parent_span_id, "db", "batch",
                                            function=call.function, batch=True), exc, None)])
            raise
        written = {p.query.table for p in prepared if p.query.is_write}
        self.cache.invalidate(written)
        spans: list[Span] = []
        results: list[dict[str, Any]] = []
        current: OpenSpan | None = None
        try:
            async with self.executor.transaction() as tx:
                for item in prepared:
                    current = _open_span(call, None, item.query, batch=True)
                    outcome = await tx.run(item.statement)
                    result = _result(outcome, item.statement.max_rows)
                    spans.append(self._finished(current, item, result, "BYPASS", outcome.rowcount))
                    results.append(result)
                    current = None
        except BaseException as exc:
            failed = prepared[len(spans)] if current is not None else None
            spans = [_rolled_back(s) for s in spans]
            if current is not None:
                spans.append(_failed(current, exc, failed))
            _emit(call, spans)
            raise
        finally:
            self.cache.invalidate(written)
        _emit(call, spans)
        return results

    # -- internals -----------------------------------------------------------------------------------

    def _prepare(self, query: Query, schema: Schema, where: str = "") -> _Prepared:
        try:
            composed, params = compile(query, schema)
        except FluxError as exc:
            if where:
                exc.message = f"{where}{exc.message}"
                exc.args = (exc.message,)
            raise
        text = composed.as_string(None)
        statement = Statement(text, params, max_rows(query), query.table, bounded=isinstance(query, SelectQuery))
        return _Prepared(query, statement, _shape(text))

    async def _run_one(self, item: _Prepared) -> tuple[dict[str, Any], str, int]:
        query, statement = item.query, item.statement
        if isinstance(query, SelectQuery) and query.cache is not None:
            key = self.cache.key(statement.sql, statement.params)
            hit = self.cache.get(key)
            if hit is not None:
                return {"rows": hit.rows, "truncated": hit.truncated}, "HIT", len(hit.rows)
            generation = self.cache.generation(query.table)
            outcome = await self.executor.run(statement)
            result = _result(outcome, statement.max_rows)
            self.cache.put(key, query.table, CachedResult(result["rows"], result["truncated"]), query.cache.ttl_s,
                           generation)
            return result, "MISS", outcome.rowcount
        if query.is_write:
            self.cache.invalidate([query.table])
            try:
                outcome = await self.executor.run(statement)
            finally:
                self.cache.invalidate([query.table])
        else:
            outcome = await self.executor.run(statement)
        return _result(outcome, statement.max_rows), "BYPASS", outcome.rowcount

    def _finished(self, span: OpenSpan, item: _Prepared, result: dict[str, Any], cache: str, count: int) -> Span:
        # rows: what a select returned; for a write, how many rows it affected (RETURNING may be capped).
        rows = count if item.query.is_write else len(result["rows"])
        done = span.finish("ok", **_query_attrs(item), rows=rows, cache=cache, truncated=result["truncated"])
        done.attrs["slow"] = done.duration_us > self.settings.slow_query_ms * 1000
        return done


@functools.lru_cache(maxsize=4096)
def _shape(text: str) -> str:
    return sql_shape(text)


def _result(outcome: Outcome, limit: int) -> dict[str, Any]:
    rows = outcome.rows
    truncated = len(rows) > limit
    if truncated:
        rows = rows[:limit]
    return {"rows": [row_to_json(r) for r in rows], "truncated": truncated}


def _open_span(call: CallContext, raw: Any, query: Query | None = None, **attrs: Any) -> OpenSpan:
    if query is not None:
        table, operation = query.table, query.operation  # type: ignore[union-attr]
    else:
        table, operation = _peek(raw, "table"), _peek(raw, "operation")
    return start_span(call.trace_id, call.parent_span_id, "db", f"{operation} {table}", function=call.function,
                      table=table, operation=operation, issued_us=call.issued_us, **attrs)


def _peek(raw: Any, key: str) -> str:
    """A name from a not-yet-validated query, for the span of a query that may be rejected."""
    value = raw.get(key) if isinstance(raw, dict) else None
    if isinstance(value, str) and len(value) <= model.MAX_IDENTIFIER_BYTES and value.isidentifier() \
            and value.isascii():
        return value.lower() if key == "operation" else value
    return "?"


def _query_attrs(item: _Prepared) -> dict[str, Any]:
    query = item.query
    filters = query.filters_
    return {
        "table": query.table,
        "operation": query.operation,  # type: ignore[union-attr]
        "sql_shape": item.shape,
        "filter_columns": [f.column for f in filters],
        "filter_ops": [f.op for f in filters],
        "order_columns": [o.column for o in getattr(query, "order", ())],
    }


def _failed(span: OpenSpan, exc: BaseException, item: _Prepared | None) -> Span:
    attrs: dict[str, Any] = _query_attrs(item) if item is not None else {}
    if isinstance(exc, FluxError):
        error = {"error.code": exc.code, "error.message": exc.message, "error.status": exc.status}
    elif isinstance(exc, asyncio.CancelledError):
        error = {"error.code": "cancelled", "error.message": "the query was cancelled (the call ended first)"}
    else:
        error = {"error.code": "internal_error", "error.message": f"{type(exc).__name__}: {exc}"}
    return span.finish("error", **attrs, rows=0, cache="BYPASS", truncated=False, **error)


def _rolled_back(span: Span) -> Span:
    span.attrs["rolled_back"] = True
    return span


def _emit(call: CallContext, spans: list[Span]) -> None:
    SafeSink(call.sink).write_spans(spans)
