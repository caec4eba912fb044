"""``compile(q, schema) -> (sql, params)``: a validated query becomes SQL, as a pure function.

Every table and column is looked up in the introspected :class:`Schema` first (unknown →
400 naming it, with a close match when there is one), and only then rendered, through
quoted identifiers (``conditions.ident``). Values never enter the SQL text: each becomes a bound
parameter, converted for its column's type (an ``"42"`` from a query string for an
integer column becomes ``42``, a UUID string a ``UUID``, a base64 string for ``bytea``
bytes, anything for ``json``/``jsonb`` a JSON parameter) so type mistakes are 400s with
the column named rather than database errors. Array parameters carry an explicit cast to
the column's array type, taken from the catalog, never from the caller.

Selects fetch ``limit + 1`` rows so the executor can report truncation instead of
silently cutting the result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from psycopg import sql

from functions.engine.coerce import coerce
from functions.engine.conditions import (
    COMPARISONS,
    Binder,
    TableTarget,
    composed,
    ident,
    resolve_column,
    resolve_table,
    sql_join,
    where_clause,
)
from functions.engine.model import (
    MAX_LIMIT,
    DeleteQuery,
    InsertQuery,
    Query,
    SelectQuery,
    UpdateQuery,
    UpsertQuery,
    is_ref,
)
from functions.engine.refs import Output
from functions.engine.schema import Column, Schema, Table
from functions.engine.selects import compile_select, output_columns
from functions.shared.errors import InvalidQuery

__all__ = ["coerce", "compile", "max_rows", "output", "resolve_column", "resolve_table", "sql_shape"]

_COMMA = sql.SQL(", ")
_OPEN, _CLOSE = sql.SQL("("), sql.SQL(")")
_PLACEHOLDER = sql.Placeholder()
_EXPRESSIONS = {"increment": sql.SQL(" + "), "decrement": sql.SQL(" - ")}
_ident = ident


def compile(q: Query, schema: Schema, *, earlier: Sequence[Output] | None = None
            ) -> tuple[sql.Composed, list[Any]]:
    """Check ``q`` against ``schema`` and build its SQL and parameters. Raises :class:`InvalidQuery`.

    ``earlier`` is what the previous queries of a batch return (for ``{$ref}`` values); outside a
    batch it is None and a reference is refused.
    """
    table = resolve_table(schema, q.table)
    binder = Binder([], earlier)
    if isinstance(q, SelectQuery):
        return compile_select(q, table, schema, binder), binder.params
    if isinstance(q, InsertQuery):  # UpsertQuery is an InsertQuery too
        return _insert(q, table, binder), binder.params
    if isinstance(q, UpdateQuery):
        return _update(q, table, binder), binder.params
    if isinstance(q, DeleteQuery):
        return _delete(q, table, binder), binder.params
    raise InvalidQuery(f"operation: {type(q).__name__} is not supported")


def output(q: Query, schema: Schema) -> Output:
    """What ``q`` returns, for references from later queries of a batch (call after :func:`compile`)."""
    table = resolve_table(schema, q.table)
    if isinstance(q, SelectQuery):
        return Output(table.name, output_columns(q, table))
    returning = getattr(q, "returning", None)
    return Output(table.name, frozenset(table.columns) if returning is None else frozenset(returning))


def max_rows(q: Query) -> int:
    """How many rows the caller may receive; more means the result is truncated."""
    return q.limit if isinstance(q, SelectQuery) and q.limit is not None else MAX_LIMIT


def sql_shape(statement: str) -> str:
    """The normalised text of rendered SQL: placeholders as ``?``, bulk VALUES rows folded into one."""
    shape = statement.replace("%s", "?")
    return _VALUES_ROWS.sub(r"VALUES \1, ...", shape)


_VALUES_ROWS = re.compile(r"VALUES (\([^()]*\))(?:, \([^()]*\))+")


def _insert(q: InsertQuery, table: Table, binder: Binder) -> sql.Composed:
    rows = q.data
    names: list[str] = []
    for i, row in enumerate(rows):
        prefix = "data" if len(rows) == 1 else f"data[{i}]"
        for name in row:
            if name not in names:
                resolve_column(table, name, f"{prefix}.{name}")
                names.append(name)
    parts: list[sql.Composable] = [sql.SQL("INSERT INTO "), _ident(table.name)]
    if not names:
        if len(rows) > 1 or isinstance(q, UpsertQuery):
            raise InvalidQuery("data: rows need at least one column")
        parts.append(sql.SQL(" DEFAULT VALUES"))
    else:
        columns = [table.columns[n] for n in names]
        tuples = []
        for i, row in enumerate(rows):
            prefix = "data" if len(rows) == 1 else f"data[{i}]"
            cells = []
            for column in columns:
                if column.name in row:
                    cells.append(binder.param(column, row[column.name], f"{prefix}.{column.name}"))
                else:
                    cells.append(sql.SQL("DEFAULT"))
            tuples.append(composed([_OPEN, sql_join(_COMMA, cells), _CLOSE]))
        parts += [sql.SQL(" ("), sql_join(_COMMA, [_ident(n) for n in names]), sql.SQL(") VALUES "),
                  sql_join(_COMMA, tuples)]
    if isinstance(q, UpsertQuery):
        parts += _on_conflict(q, table, names)
    parts += _returning(q.returning, table)
    return composed(parts)


def _on_conflict(q: UpsertQuery, table: Table, names: list[str]) -> list[sql.Composable]:
    if q.on_conflict is None:
        if not table.primary_key:
            raise InvalidQuery(f"on_conflict: table '{table.name}' has no primary key; name its unique columns")
        keys = list(table.primary_key)
    else:
        keys = [resolve_column(table, c, f"on_conflict[{i}]").name for i, c in enumerate(q.on_conflict)]
        if frozenset(keys) not in table.unique_keys():
            raise InvalidQuery(f"on_conflict: ({', '.join(keys)}) is not the primary key or a unique index "
                               f"of table '{table.name}'")
    updates = [n for n in names if n not in keys]
    target = sql_join(_COMMA, [_ident(k) for k in keys])
    if not updates:
        return [sql.SQL(" ON CONFLICT ("), target, sql.SQL(") DO NOTHING")]
    sets = sql_join(_COMMA, [composed([_ident(n), sql.SQL(" = EXCLUDED."), _ident(n)]) for n in updates])
    return [sql.SQL(" ON CONFLICT ("), target, sql.SQL(") DO UPDATE SET "), sets]


def _update(q: UpdateQuery, table: Table, binder: Binder) -> sql.Composed:
    sets = []
    for name, value in q.data.items():
        column = resolve_column(table, name, f"data.{name}")
        sets.append(composed([_ident(column.name), COMPARISONS["eq"], _value(column, value, f"data.{name}",
                                                                                  binder)]))
    parts: list[sql.Composable] = [sql.SQL("UPDATE "), _ident(table.name), sql.SQL(" SET "), sql_join(_COMMA, sets)]
    parts += where_clause(q.filters, TableTarget(table), binder)
    parts += _returning(q.returning, table)
    return composed(parts)


def _value(column: Column, value: Any, where: str, binder: Binder) -> sql.Composable:
    """A new value, or an atomic expression on the current one: ``{increment: 1}``, ``{decrement: 2}``."""
    if isinstance(value, dict) and not column.is_json and not is_ref(value):
        if len(value) != 1 or next(iter(value)) not in _EXPRESSIONS:
            raise InvalidQuery(f"{where}: an object sets '{column.name}' only as {{increment: n}} or "
                               f"{{decrement: n}} (column '{column.name}' is {column.type})")
        (kind, amount), = value.items()
        if column.category != "N":
            raise InvalidQuery(f"{where}.{kind}: '{kind}' needs a numeric column; '{column.name}' is {column.type}")
        if amount is None or (isinstance(amount, dict | list) and not is_ref(amount)):
            raise InvalidQuery(f"{where}.{kind}: needs a number")
        return composed([_ident(column.name), _EXPRESSIONS[kind], binder.param(column, amount,
                                                                                   f"{where}.{kind}")])
    return binder.param(column, value, where)


def _delete(q: DeleteQuery, table: Table, binder: Binder) -> sql.Composed:
    parts: list[sql.Composable] = [sql.SQL("DELETE FROM "), _ident(table.name)]
    parts += where_clause(q.filters, TableTarget(table), binder)
    parts += _returning(q.returning, table)
    return composed(parts)


def _returning(returning: tuple[str, ...] | None, table: Table) -> list[sql.Composable]:
    if returning is None:
        return [sql.SQL(" RETURNING *")]
    if not returning:
        return []
    names = [_ident(resolve_column(table, c, f"returning[{i}]").name) for i, c in enumerate(returning)]
    return [sql.SQL(" RETURNING "), sql_join(_COMMA, names)]
