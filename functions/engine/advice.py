"""Index advice checked by the planner, and the schema graph.

Candidates come from spans, not guesses: the filter and order columns of db spans that
were slow or repeated (N+1 or simply frequent). A candidate is dropped when an existing
index already leads with its columns. A plain view cannot be indexed: its candidate moves to
its one base table when that table has the columns, and is dropped otherwise. Each survivor
is then *proved*: the representative
query (rebuilt from the span's structured attrs and the live schema, never from SQL
text) is planned with ``EXPLAIN (GENERIC_PLAN, FORMAT JSON)`` before and after creating
the index inside a transaction that is always rolled back (or with a hypothetical
``hypopg`` index when that extension is installed). Only an index that lowers the
estimated cost by at least ``min_improvement`` is suggested, with its DDL and both costs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg import sql

from functions.engine.detectors import find_n_plus_one
from functions.engine.executor import translate_error
from functions.engine.introspect import load_schema
from functions.engine.schema import Schema, Table
from functions.shared.spans import Span

_log = logging.getLogger("flux.engine.advice")
_EQUALITY = ("eq", "in", "is_null")
_RANGE = ("gt", "gte", "lt", "lte")
_MAX_INDEX_COLUMNS = 3


class AdvicePort(Protocol):
    def schema_graph(self) -> dict[str, Any]:
        """Tables, columns with types, primary and foreign keys, indexes, and suggested indexes."""

    def suggest_indexes(self, spans: Sequence[Span]) -> list[dict[str, Any]]:
        """Planner-checked index suggestions for the queries in ``spans``."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An index worth checking, with the query shape that asked for it."""

    table: str
    columns: tuple[str, ...]
    filters: tuple[tuple[str, str], ...]
    order: tuple[str, ...]
    sql_shape: str
    reasons: tuple[str, ...] = field(default=())


def index_candidates(spans: Sequence[Span], schema: Schema, *, slow_query_ms: int,
                     n_plus_one_threshold: int) -> list[Candidate]:
    """Pure: which (table, columns) to test, from slow or repeated db spans."""
    db = [s for s in spans if s.kind == "db" and s.attrs.get("operation") in ("select", "update", "delete")]
    repeated = {w["sql_shape"]: w for w in find_n_plus_one(db, n_plus_one_threshold)}
    counts = Counter(str(s.attrs.get("sql_shape") or "") for s in db)
    found: dict[tuple[str, tuple[str, ...]], Candidate] = {}
    for span in db:
        attrs = span.attrs
        shape = str(attrs.get("sql_shape") or "")
        slow = span.duration_us > slow_query_ms * 1000
        frequent = counts[shape] >= n_plus_one_threshold
        if not (slow or frequent or shape in repeated):
            continue
        queried = schema.table(str(attrs.get("table") or ""))
        if queried is None:
            continue
        filters = tuple((str(c), str(o)) for c, o in zip(attrs.get("filter_columns") or [],
                                                         attrs.get("filter_ops") or [], strict=False)
                        if str(c) in queried.columns)
        order = tuple(str(c) for c in attrs.get("order_columns") or [] if str(c) in queried.columns)
        columns = _index_columns(filters, order)
        table = index_target(schema, queried, columns) if columns else None
        if table is None or not columns or _covered(table, columns):
            continue
        if slow:
            reason = f"`{attrs.get('operation')} {table.name}` took {span.duration_us / 1000:.1f} ms"
        elif shape in repeated:
            reason = f"`{attrs.get('operation')} {table.name}` ran {repeated[shape]['count']} times in one request"
        else:
            reason = f"`{attrs.get('operation')} {table.name}` ran {counts[shape]} times in the recent traces"
        if table is not queried:
            reason += f" (through view '{queried.name}', which reads '{table.name}')"
        key = (table.name, columns)
        previous = found.get(key)
        reasons = (previous.reasons if previous else ()) + ((reason,) if not previous or reason not in
                                                            previous.reasons else ())
        found[key] = Candidate(table.name, columns, filters, order, shape, reasons[:3])
    return list(found.values())


def index_target(schema: Schema, table: Table, columns: tuple[str, ...]) -> Table | None:
    """Where an index for ``columns`` of ``table`` would go: the table itself, or for a view its base table.

    A view cannot be indexed. When it reads exactly one table that has every column by the
    same name (a filtering or projecting view), the index goes there; otherwise no
    suggestion is made. Materialized views are real relations and are indexed themselves.
    """
    if table.kind != "view":
        return table
    bases = [schema.tables[name] for name in table.base_tables
             if name in schema.tables and schema.tables[name].kind not in ("view",)]
    if len(bases) != 1 or any(c not in bases[0].columns for c in columns):
        return None
    return bases[0]


def _index_columns(filters: tuple[tuple[str, str], ...], order: tuple[str, ...]) -> tuple[str, ...]:
    """Equality columns first, then one range column, or else the sort columns: the usual btree order."""
    columns: list[str] = [c for c, o in filters if o in _EQUALITY]
    ranged = [c for c, o in filters if o in _RANGE]
    columns += ranged[:1] if ranged else list(order)
    unique = list(dict.fromkeys(columns))
    return tuple(unique[:_MAX_INDEX_COLUMNS])


def _covered(table: Table, columns: tuple[str, ...]) -> bool:
    for existing in table.leading_columns():
        if existing[: len(columns)] == columns or (len(columns) == 1 and existing[0] == columns[0]):
            return True
    return False


def probe_query(candidate: Candidate, table: Table, *, generic: bool = True) -> sql.Composed:
    """The query to plan, rebuilt from structured attrs with ``$n`` parameters (or ``%s`` when not generic)."""
    conditions: list[sql.Composable] = []
    number = 0
    for column_name, op in candidate.filters:
        column = table.columns[column_name]
        ident = sql.Identifier(column.name)
        if op in ("is_null", "not_null"):
            conditions.append(sql.SQL("{} IS NULL" if op == "is_null" else "{} IS NOT NULL").format(ident))
            continue
        if op not in _EQUALITY + _RANGE:
            continue
        number += 1
        operator = {"eq": "=", "in": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        slot = (sql.SQL("${}::{}").format(sql.SQL(str(number)), sql.Identifier(column.udt_schema, column.udt))
                if generic else sql.Placeholder())
        conditions.append(sql.SQL("{} {} {}").format(ident, sql.SQL(operator), slot))
    parts: list[sql.Composable] = [sql.SQL("SELECT * FROM "), sql.Identifier(table.name)]
    if conditions:
        parts += [sql.SQL(" WHERE "), sql.SQL(" AND ").join(conditions)]
    if candidate.order:
        parts += [sql.SQL(" ORDER BY "), sql.SQL(", ").join(sql.Identifier(c) for c in candidate.order)]
    parts.append(sql.SQL(" LIMIT 100"))
    return sql.Composed(parts)


def index_ddl(table: str, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
        sql.Identifier(index_name(table, columns)), sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns))


def index_name(table: str, columns: tuple[str, ...]) -> str:
    name = f"{table}_{'_'.join(columns)}_idx"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{name.encode()[:50].decode(errors='ignore')}_{digest}_idx"


class PostgresAdvice:
    """:class:`AdvicePort` over a synchronous psycopg connection (CLI, engine Lambda, local API)."""

    def __init__(self, dsn: str, *, slow_query_ms: int = 100, n_plus_one_threshold: int = 5,
                 min_improvement: float = 0.1, connect_timeout_s: float = 5.0, statement_timeout_ms: int = 15_000,
                 recent_spans: Callable[[], Sequence[Span]] | None = None) -> None:
        self.dsn = dsn
        self.slow_query_ms = slow_query_ms
        self.n_plus_one_threshold = n_plus_one_threshold
        self.min_improvement = min_improvement
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms
        self.recent_spans = recent_spans

    def schema(self) -> Schema:
        with self._connect() as conn:
            return load_schema(conn)

    def schema_graph(self) -> dict[str, Any]:
        with self._connect() as conn:
            schema = load_schema(conn)
            suggested = self._suggest(conn, schema, self.recent_spans()) if self.recent_spans else []
        return schema.to_graph(suggested)

    def suggest_indexes(self, spans: Sequence[Span]) -> list[dict[str, Any]]:
        with self._connect() as conn:
            return self._suggest(conn, load_schema(conn), spans)

    def _suggest(self, conn: psycopg.Connection[Any], schema: Schema, spans: Sequence[Span]) -> list[dict[str, Any]]:
        candidates = index_candidates(spans, schema, slow_query_ms=self.slow_query_ms,
                                      n_plus_one_threshold=self.n_plus_one_threshold)
        if not candidates:
            return []
        try:
            generic = conn.info.server_version >= 160000
            hypopg = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'").fetchone() is not None
            suggestions = []
            for candidate in candidates:
                table = schema.tables[candidate.table]
                try:
                    costs = self._costs(conn, candidate, table, generic=generic, hypopg=hypopg)
                except psycopg.Error as exc:
                    if _is_outage(exc):
                        raise
                    # One candidate the planner cannot judge (a relation that cannot be indexed, a lock)
                    # must not take the schema graph or the other suggestions down with it.
                    _log.info("index candidate %s(%s) skipped: %s", candidate.table, ", ".join(candidate.columns),
                              str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                    continue
                if costs is None:
                    continue
                before, after = costs
                if after < before * (1 - self.min_improvement):
                    suggestions.append(self._suggestion(conn, candidate, before, after))
        except psycopg.Error as exc:
            raise translate_error(exc, "", statement_timeout_ms=self.statement_timeout_ms,
                                  connect_timeout_s=self.connect_timeout_s) from None
        suggestions.sort(key=lambda s: s["est_cost_after"] / max(s["est_cost_before"], 1e-9))
        return suggestions

    def _costs(self, conn: psycopg.Connection[Any], candidate: Candidate, table: Table, *, generic: bool,
               hypopg: bool) -> tuple[float, float] | None:
        query = probe_query(candidate, table, generic=generic)
        params = None if generic else self._sample(conn, candidate, table)
        if not generic and params is None:
            return None
        explain = sql.SQL("EXPLAIN (GENERIC_PLAN, FORMAT JSON) " if generic else "EXPLAIN (FORMAT JSON) ") + query
        ddl = index_ddl(candidate.table, candidate.columns)
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(self.statement_timeout_ms)))
            conn.execute("SET LOCAL lock_timeout = 2000")
            if _never_analyzed(conn, candidate.table):
                # Statistics gathered here are rolled back with everything else; they only make the plans honest.
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(candidate.table)))
            before = _total_cost(conn, explain, params)
            if hypopg:
                hypothetical = sql.SQL("CREATE INDEX ON {} ({})").format(
                    sql.Identifier(candidate.table), sql.SQL(", ").join(sql.Identifier(c) for c in candidate.columns))
                conn.execute("SELECT hypopg_create_index(%s)", [hypothetical.as_string(conn)])
            else:
                conn.execute(ddl)
            after = _total_cost(conn, explain, params)
        return before, after

    def _sample(self, conn: psycopg.Connection[Any], candidate: Candidate, table: Table) -> list[Any] | None:
        """Before Postgres 16 (no GENERIC_PLAN): plan with values taken from one real row."""
        wanted = [c for c, op in candidate.filters if op in _EQUALITY + _RANGE and op != "is_null"]
        if not wanted:
            return []
        row = conn.execute(sql.SQL("SELECT {} FROM {} LIMIT 1").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in wanted), sql.Identifier(table.name))).fetchone()
        return list(row) if row is not None else None

    def _suggestion(self, conn: psycopg.Connection[Any], candidate: Candidate, before: float,
                    after: float) -> dict[str, Any]:
        drop = (1 - after / before) * 100 if before else 0.0
        return {
            "table": candidate.table,
            "columns": list(candidate.columns),
            "ddl": index_ddl(candidate.table, candidate.columns).as_string(conn) + ";",
            "reason": f"{'; '.join(candidate.reasons)}; filtering/sorting on {', '.join(candidate.columns)} — "
                      f"the planner's estimated cost drops {drop:.0f}% with this index",
            "est_cost_before": round(before, 2),
            "est_cost_after": round(after, 2),
            "sql_shape": candidate.sql_shape,
        }

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(2, int(self.connect_timeout_s)),
                                   application_name="flux-advice")
        except psycopg.Error as exc:
            raise translate_error(exc, "", statement_timeout_ms=self.statement_timeout_ms,
                                  connect_timeout_s=self.connect_timeout_s) from None


def _is_outage(exc: psycopg.Error) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith(("08", "53", "57")) or (isinstance(exc, psycopg.OperationalError) and not state)


def _never_analyzed(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT last_analyze IS NULL AND last_autoanalyze IS NULL FROM pg_stat_user_tables "
                       "WHERE schemaname = 'public' AND relname = %s", [table]).fetchone()
    return bool(row and row[0])


def _total_cost(conn: psycopg.Connection[Any], explain: sql.Composed, params: list[Any] | None) -> float:
    row = conn.execute(explain, params).fetchone()
    assert row is not None
    plan = row[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Total Cost"])
