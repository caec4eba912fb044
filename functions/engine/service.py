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
from functions.engine.compiler import compile, max_rows, output, sql_shape
from functions.engine.executor import Executor, Outcome, PsycopgExecutor, Statement
from functions.engine.model import Query, SelectQuery, conjuncts, leaves, parse_batch, parse_query, walk_embeds
from functions.engine.refs import Output, resolve
from functions.engine.schema import Schema
from functions.engine.selects import ROW, TOTAL, embed_summary
from functions.engine.values import rows_to_json
from functions.shared.context import CallContext
from functions.shared.errors import FluxError, PermissionDenied
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
    reads: frozenset[str] = frozenset()      # relations a cached select depends on (views: their base tables)
    hints: tuple[dict[str, Any], ...] = ()   # foreign keys an N+1 of this query could embed along


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
        self._hints: dict[tuple[str, str], tuple[dict[str, Any], ...]] = {}
        self._hints_schema: Schema | None = None

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
        except PermissionDenied as exc:
            _prefix(exc, _operation(prepared))
            _emit(call, [_failed(span, exc, prepared)])
            raise
        except BaseException as exc:  # the span records any failure, even a cancellation, then it propagates
            _emit(call, [_failed(span, exc, prepared)])
            raise
        _emit(call, [self._finished(span, prepared, result, cache_status, count)])
        return result

    async def batch(self, queries: Any, call: CallContext) -> list[dict[str, Any]]:
        try:
            parsed = parse_batch(queries, default_limit=self.settings.default_limit, max_limit=self.settings.max_limit)
            schema = await self.schema()
            prepared = []
            earlier: list[Output] = []
            for i, q in enumerate(parsed):
                prepared.append(self._prepare(q, schema, where=f"batch[{i}].", earlier=earlier))
                earlier.append(output(q, schema))
        except FluxError as exc:
            _emit(call, [_failed(start_span(call.trace_id, call.parent_span_id, "db", "batch",
                                            function=call.function, batch=True), exc, None)])
            raise
        written = {p.query.table for p in prepared if p.query.is_write}
        self.cache.invalidate(written)
        spans: list[Span] = []
        results: list[dict[str, Any]] = []
        outcomes: list[Outcome] = []
        current: OpenSpan | None = None
        try:
            async with self.executor.transaction() as tx:
                for i, item in enumerate(prepared):
                    current = _open_span(call, None, item.query, batch=True)
                    try:
                        outcome = await tx.run(_bound(item.statement, outcomes, f"batch[{i}]."))
                    except PermissionDenied as exc:
                        raise _prefix(exc, f"batch[{i}].{_operation(item)}") from exc
                    outcomes.append(outcome)
                    result = _result(outcome, item.statement.max_rows, item.query)
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

    def _prepare(self, query: Query, schema: Schema, where: str = "",
                 earlier: list[Output] | None = None) -> _Prepared:
        try:
            composed, params = compile(query, schema, earlier=earlier)
        except FluxError as exc:
            if where:
                _prefix(exc, where)
            raise
        text = composed.as_string(None)
        statement = Statement(text, params, max_rows(query), query.table, bounded=isinstance(query, SelectQuery))
        prepared = _Prepared(query, statement, _shape(text))
        if isinstance(query, SelectQuery):
            if query.cache is not None:
                prepared.reads = schema.reads([query.table, *(e.table for _, e in walk_embeds(query.embed, ""))])
            if not query.embed and not query.aggregates and not query.group_by:
                prepared.hints = self._embed_hints(schema, query)
        return prepared

    def _embed_hints(self, schema: Schema, query: SelectQuery) -> tuple[dict[str, Any], ...]:
        """For each equality filter on a foreign-key column (either side): the embed that could replace a loop.

        Memoised per schema: this runs on every select, the answer only changes with the schema.
        """
        hints: list[dict[str, Any]] = []
        for f in conjuncts(query.filters):
            if f.op != "eq" or f.path is not None:
                continue
            if self._hints_schema is not schema or len(self._hints) > 4096:
                self._hints, self._hints_schema = {}, schema
            key = (query.table, f.column)
            found = self._hints.get(key)
            if found is None:
                found = self._hints[key] = _hints_for(schema, query.table, f.column)
            hints.extend(found)
        return tuple(hints[:8])

    async def _run_one(self, item: _Prepared) -> tuple[dict[str, Any], str, int]:
        query, statement = item.query, item.statement
        if isinstance(query, SelectQuery) and query.cache is not None:
            key = self.cache.key(statement.sql, statement.params)
            hit = self.cache.get(key)
            if hit is not None:
                return _shaped(query, hit.rows, hit.truncated, hit.count), "HIT", len(hit.rows)
            generation = self.cache.generation(item.reads)
            outcome = await self.executor.run(statement)
            rows, truncated, count = _rows(outcome, statement.max_rows, query)
            self.cache.put(key, item.reads, CachedResult(rows, truncated, count), query.cache.ttl_s, generation)
            return _shaped(query, rows, truncated, count), "MISS", outcome.rowcount
        if query.is_write:
            self.cache.invalidate([query.table])
            try:
                outcome = await self.executor.run(statement)
            finally:
                self.cache.invalidate([query.table])
        else:
            outcome = await self.executor.run(statement)
        return _result(outcome, statement.max_rows, query), "BYPASS", outcome.rowcount

    def _finished(self, span: OpenSpan, item: _Prepared, result: dict[str, Any], cache: str, count: int) -> Span:
        # rows: what a select returned; for a write, how many rows it affected (RETURNING may be capped).
        returned = result["rows"]["rows"] if isinstance(result["rows"], dict) else result["rows"]
        rows = count if item.query.is_write else len(returned)
        done = span.finish("ok", **_query_attrs(item), rows=rows, cache=cache, truncated=result["truncated"])
        done.attrs["slow"] = done.duration_us > self.settings.slow_query_ms * 1000
        return done


@functools.lru_cache(maxsize=4096)
def _shape(text: str) -> str:
    return sql_shape(text)


def _result(outcome: Outcome, limit: int, query: Query) -> dict[str, Any]:
    rows, truncated, count = _rows(outcome, limit, query)
    return _shaped(query, rows, truncated, count)


def _rows(outcome: Outcome, limit: int, query: Query) -> tuple[list[dict[str, Any]], bool, int | None]:
    """JSON rows (at most ``limit``), whether there were more, and the exact count when one was asked for."""
    rows = outcome.rows
    count: int | None = None
    if isinstance(query, SelectQuery) and query.count is not None:
        # One row always comes back: the count, joined to the page rows (none when the page is empty).
        count = int(rows[0][TOTAL]) if rows else 0
        rows = [] if query.limit == 0 else [{k: v for k, v in r.items() if k not in (TOTAL, ROW)} for r in rows
                                            if r.get(ROW) is not None]
    truncated = len(rows) > limit
    if truncated:
        rows = rows[:limit]
    if count is not None and query.limit == 0:
        truncated = count > getattr(query, "offset", 0)
    return rows_to_json(rows), truncated, count


def _shaped(query: Query, rows: list[dict[str, Any]], truncated: bool, count: int | None) -> dict[str, Any]:
    """What ``ctx.db.query`` resolves to is ``result["rows"]``: the list, or the page object when asked for."""
    if not (isinstance(query, SelectQuery) and query.wants_page):
        return {"rows": rows, "truncated": truncated}
    page: dict[str, Any] = {"rows": rows, "truncated": truncated,
                            "next_offset": query.offset + len(rows) if truncated else None}
    if count is not None:
        page["count"] = count
    return {"rows": page, "truncated": truncated}


def _bound(statement: Statement, outcomes: list[Outcome], where: str) -> Statement:
    """The statement with its batch references replaced by the values earlier queries returned."""
    try:
        params = resolve(statement.params, outcomes)
    except FluxError as exc:
        raise _prefix(exc, where) from None
    if params == list(statement.params):
        return statement
    return Statement(statement.sql, params, statement.max_rows, statement.table, statement.bounded)


def _operation(item: _Prepared | None) -> str:
    """``"update orders: "``: which statement a permission error came from (Postgres names only the table)."""
    if item is None:
        return ""
    return f"{getattr(item.query, 'operation', 'select')} {item.query.table}: "


def _prefix(exc: FluxError, where: str) -> FluxError:
    exc.message = f"{where}{exc.message}"
    exc.args = (exc.message,)
    return exc


def _hints_for(schema: Schema, table_name: str, column: str) -> tuple[dict[str, Any], ...]:
    """Embeds that fetch rows of ``table_name`` found by ``column`` together with the rows they belong to.

    ``order_items.order_id = ?`` in a loop → select orders with ``embed: {order_items: ...}`` (to-many);
    ``products.id = ?`` in a loop → select order_items with ``embed: {products: ...}`` (to-one).
    """
    table = schema.table(table_name)
    if table is None:
        return ()
    hints = [{"table": fk.ref_table, "embed_table": table_name, "column": column, "via": fk.columns[0],
              "many": True} for fk in table.foreign_keys if fk.columns == (column,)]
    hints += [{"table": other.name, "embed_table": table_name, "column": column, "via": fk.columns[0],
               "many": False} for other, fk in schema.referencing(table_name) if fk.ref_columns == (column,)
              and len(fk.columns) == 1 and other.name != table_name]
    return tuple(hints)


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
    """Span attributes: the filter and order columns the advisor reads, and what the richer forms used.

    ``filter_columns``/``filter_ops`` hold the conditions that must all hold (what an index can
    serve); conditions under ``or``/``not`` are listed apart in ``filter_any_columns``.
    """
    query = item.query
    filters = conjuncts(query.filters_)
    attrs: dict[str, Any] = {
        "table": query.table,
        "operation": query.operation,  # type: ignore[union-attr]
        "sql_shape": item.shape,
        "filter_columns": [f.column for f in filters],
        "filter_ops": [f"path_{f.op}" if f.path is not None else f.op for f in filters],
        "order_columns": [o.column for o in getattr(query, "order", ())],
    }
    every = leaves(query.filters_)
    if len(every) > len(filters):
        required = {id(f) for f in filters}
        attrs["filter_any_columns"] = list(dict.fromkeys(f.column for f in every if id(f) not in required))
    if isinstance(query, SelectQuery):
        if query.embed:
            attrs["embeds"] = embed_summary(query)
        if query.group_by:
            attrs["group_by"] = list(query.group_by)
        if query.aggregates:
            attrs["aggregates"] = [f"{a.fn}({a.column or '*'})" for a in query.aggregates]
        if query.distinct:
            attrs["distinct"] = True
        if query.count is not None:
            attrs["count"] = query.count
    if item.hints:
        attrs["embed_hints"] = [dict(h) for h in item.hints]
    return attrs


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
