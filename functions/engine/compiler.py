"""``compile(q, schema) -> (sql, params)``: a validated query becomes SQL, as a pure function.

Every table and column is looked up in the introspected :class:`Schema` first (unknown →
400 naming it, with a close match when there is one), and only then rendered, through
``psycopg.sql.Identifier``. Values never enter the SQL text: each becomes a bound
parameter, converted for its column's type (an ``"42"`` from a query string for an
integer column becomes ``42``, a UUID string a ``UUID``, a base64 string for ``bytea``
bytes, anything for ``json``/``jsonb`` a JSON parameter) so type mistakes are 400s with
the column named rather than database errors. Array parameters carry an explicit cast to
the column's array type, taken from the catalog, never from the caller.

Selects fetch ``limit + 1`` rows so the executor can report truncation instead of
silently cutting the result.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import math
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg import sql
from psycopg.types.json import Json, Jsonb

from functions.engine.model import (
    MAX_LIMIT,
    DeleteQuery,
    Filter,
    InsertQuery,
    Query,
    SelectQuery,
    UpdateQuery,
    UpsertQuery,
)
from functions.engine.schema import INTERNAL_TABLES, Column, Schema, Table
from functions.shared.errors import InvalidQuery

# Fragments are built once: composing psycopg.sql objects is most of the compiler's cost.
_COMPARISONS = {op: sql.SQL(f" {text} ") for op, text in
                {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE",
                 "ilike": "ILIKE"}.items()}
_DIRECTIONS = {"asc": sql.SQL(" ASC"), "desc": sql.SQL(" DESC")}
_COMMA = sql.SQL(", ")
_AND = sql.SQL(" AND ")
_IS_NULL = sql.SQL(" IS NULL")
_IS_NOT_NULL = sql.SQL(" IS NOT NULL")
_SELECT, _FROM, _WHERE, _ORDER_BY = sql.SQL("SELECT "), sql.SQL(" FROM "), sql.SQL(" WHERE "), sql.SQL(" ORDER BY ")
_LIMIT, _OFFSET = sql.SQL(" LIMIT %s"), sql.SQL(" OFFSET %s")
_ANY, _ALL, _CAST = sql.SQL(" = ANY(%s"), sql.SQL(" <> ALL(%s"), sql.SQL("::")
_OPEN, _CLOSE = sql.SQL("("), sql.SQL(")")
_INT_RANGES = {"int2": 2**15 - 1, "int4": 2**31 - 1, "int8": 2**63 - 1}
_FLOAT_MAX = {"float4": 3.4028234663852886e38, "float8": 1.7976931348623157e308}
_FLOAT_WORDS = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf, "-inf": -math.inf}
_TEXTUAL = frozenset("SDTE")  # string, date/time, interval, enum: given as text, parsed by Postgres
_INTEGER_TEXT = re.compile(r"^[+-]?\d{1,20}$")
_STAR = sql.SQL("*")
_PLACEHOLDER = sql.Placeholder()


@functools.lru_cache(maxsize=8192)
def _ident(*names: str) -> sql.Identifier:
    """Identifiers are immutable and few: build each once."""
    return sql.Identifier(*names)


def compile(q: Query, schema: Schema) -> tuple[sql.Composed, list[Any]]:
    """Check ``q`` against ``schema`` and build its SQL and parameters. Raises :class:`InvalidQuery`."""
    table = resolve_table(schema, q.table)
    if isinstance(q, SelectQuery):
        return _select(q, table)
    if isinstance(q, InsertQuery):  # UpsertQuery is an InsertQuery too
        return _insert(q, table)
    if isinstance(q, UpdateQuery):
        return _update(q, table)
    if isinstance(q, DeleteQuery):
        return _delete(q, table)
    raise InvalidQuery(f"operation: {type(q).__name__} is not supported")


def max_rows(q: Query) -> int:
    """How many rows the caller may receive; more means the result is truncated."""
    return q.limit if isinstance(q, SelectQuery) and q.limit is not None else MAX_LIMIT


def sql_shape(statement: str) -> str:
    """The normalised text of rendered SQL: placeholders as ``?``, bulk VALUES rows folded into one."""
    shape = statement.replace("%s", "?")
    return _VALUES_ROWS.sub(r"VALUES \1, ...", shape)


_VALUES_ROWS = re.compile(r"VALUES (\([^()]*\))(?:, \([^()]*\))+")


def resolve_table(schema: Schema, name: str) -> Table:
    table = schema.table(name)
    if table is None or name in INTERNAL_TABLES:
        raise InvalidQuery(f"table: unknown table '{name}'{_hint(name, schema.tables)}")
    return table


def resolve_column(table: Table, name: str, where: str) -> Column:
    column = table.column(name)
    if column is None:
        raise InvalidQuery(f"{where}: unknown column '{name}' in table '{table.name}'{_hint(name, table.columns)}")
    return column


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, [k for k in known if k not in INTERNAL_TABLES], n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


# -- statements ------------------------------------------------------------------------------------------

def _select(q: SelectQuery, table: Table) -> tuple[sql.Composed, list[Any]]:
    params: list[Any] = []
    if q.columns is None:
        columns: sql.Composable = _STAR
    else:
        columns = _COMMA.join(_ident(resolve_column(table, c, f"columns[{i}]").name) for i, c in enumerate(q.columns))
    parts: list[sql.Composable] = [_SELECT, columns, _FROM, _ident(table.name)]
    parts += _where(q.filters, table, params)
    if q.order:
        keys = [sql.Composed([_ident(resolve_column(table, o.column, f"order[{i}].column").name),
                              _DIRECTIONS[o.direction]])
                for i, o in enumerate(q.order)]
        parts += [_ORDER_BY, _COMMA.join(keys)]
    parts.append(_LIMIT)
    params.append((q.limit if q.limit is not None else MAX_LIMIT) + 1)
    if q.offset:
        parts.append(_OFFSET)
        params.append(q.offset)
    return sql.Composed(parts), params


def _insert(q: InsertQuery, table: Table) -> tuple[sql.Composed, list[Any]]:
    params: list[Any] = []
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
                    cells.append(_param(column, row[column.name], f"{prefix}.{column.name}", params))
                else:
                    cells.append(sql.SQL("DEFAULT"))
            tuples.append(sql.Composed([_OPEN, _COMMA.join(cells), _CLOSE]))
        parts += [sql.SQL(" ("), _COMMA.join(_ident(n) for n in names), sql.SQL(") VALUES "), _COMMA.join(tuples)]
    if isinstance(q, UpsertQuery):
        parts += _on_conflict(q, table, names)
    parts += _returning(q.returning, table)
    return sql.Composed(parts), params


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
    target = _COMMA.join(_ident(k) for k in keys)
    if not updates:
        return [sql.SQL(" ON CONFLICT ("), target, sql.SQL(") DO NOTHING")]
    sets = _COMMA.join(sql.Composed([_ident(n), sql.SQL(" = EXCLUDED."), _ident(n)]) for n in updates)
    return [sql.SQL(" ON CONFLICT ("), target, sql.SQL(") DO UPDATE SET "), sets]


def _update(q: UpdateQuery, table: Table) -> tuple[sql.Composed, list[Any]]:
    params: list[Any] = []
    sets = []
    for name, value in q.data.items():
        column = resolve_column(table, name, f"data.{name}")
        sets.append(sql.Composed([_ident(column.name), _COMPARISONS["eq"],
                                  _param(column, value, f"data.{name}", params)]))
    parts: list[sql.Composable] = [sql.SQL("UPDATE "), _ident(table.name), sql.SQL(" SET "), _COMMA.join(sets)]
    parts += _where(q.filters, table, params)
    parts += _returning(q.returning, table)
    return sql.Composed(parts), params


def _delete(q: DeleteQuery, table: Table) -> tuple[sql.Composed, list[Any]]:
    params: list[Any] = []
    parts: list[sql.Composable] = [sql.SQL("DELETE FROM "), _ident(table.name)]
    parts += _where(q.filters, table, params)
    parts += _returning(q.returning, table)
    return sql.Composed(parts), params


def _returning(returning: tuple[str, ...] | None, table: Table) -> list[sql.Composable]:
    if returning is None:
        return [sql.SQL(" RETURNING *")]
    if not returning:
        return []
    names = [_ident(resolve_column(table, c, f"returning[{i}]").name) for i, c in enumerate(returning)]
    return [sql.SQL(" RETURNING "), _COMMA.join(names)]


def _where(filters: tuple[Filter, ...], table: Table, params: list[Any]) -> list[sql.Composable]:
    if not filters:
        return []
    return [_WHERE, _AND.join(_condition(f, table, f"filters[{i}]", params) for i, f in enumerate(filters))]


def _condition(f: Filter, table: Table, where: str, params: list[Any]) -> sql.Composable:
    column = resolve_column(table, f.column, f"{where}.column")
    ident = _ident(column.name)
    if f.op == "is_null":
        return sql.Composed([ident, _IS_NULL])
    if f.op == "not_null":
        return sql.Composed([ident, _IS_NOT_NULL])
    if f.op in ("in", "not_in"):
        if column.is_array:
            raise InvalidQuery(f"{where}.op: '{f.op}' does not apply to array column '{column.name}'")
        items = [coerce(column, v, f"{where}.value[{i}]") for i, v in enumerate(f.value or ())]
        if any(item is None for item in items):
            raise InvalidQuery(f"{where}.value: an '{f.op}' list cannot hold null (add an is_null filter instead)")
        params.append(items)
        cast: list[sql.Composable] = ([_CAST, _ident(column.udt_schema, column.array_udt)]
                                      if column.array_udt and not column.is_json else [])
        return sql.Composed([ident, _ANY if f.op == "in" else _ALL, *cast, _CLOSE])
    if f.op in ("like", "ilike") and column.category != "S":
        raise InvalidQuery(f"{where}.op: '{f.op}' applies to text columns; '{column.name}' is {column.type}")
    return sql.Composed([ident, _COMPARISONS[f.op], _param(column, f.value, f"{where}.value", params)])


def _param(column: Column, value: Any, where: str, params: list[Any]) -> sql.Composable:
    params.append(coerce(column, value, where))
    if column.is_array:
        return sql.Composed([_PLACEHOLDER, _CAST, _ident(column.udt_schema, column.udt)])
    return _PLACEHOLDER


# -- values ----------------------------------------------------------------------------------------------

def coerce(column: Column, value: Any, where: str) -> Any:
    """The Python value psycopg should bind for ``value`` in ``column``; a mismatch is a 400 naming both."""
    if value is None:
        return None
    if column.is_json:
        return Jsonb(value) if column.udt == "jsonb" else Json(value)
    if isinstance(value, dict):
        raise _mismatch(column, value, where, "an object is only accepted by json/jsonb columns")
    if column.is_array:
        if not isinstance(value, list | tuple):
            raise _mismatch(column, value, where, "expects a list")
        return list(value)
    if isinstance(value, list | tuple):
        raise _mismatch(column, value, where, "a list is only accepted by array columns (or by 'in' filters)")
    if column.udt == "bytea":
        return _bytea(column, value, where)
    if column.udt == "uuid":
        return _uuid(column, value, where)
    if column.category == "N":
        return _number(column, value, where)
    if column.category == "B":
        return _boolean(column, value, where)
    if column.category in _TEXTUAL and not isinstance(value, str):
        raise _mismatch(column, value, where, "expects a string")
    return value


def _number(column: Column, value: Any, where: str) -> Any:
    udt = column.udt
    if isinstance(value, bool):
        raise _mismatch(column, value, where, "expects a number")
    if udt in _INT_RANGES:
        number: Any = value
        if isinstance(value, str) and _INTEGER_TEXT.match(value.strip()):
            number = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if not isinstance(number, int):
            raise _mismatch(column, value, where, "expects an integer")
        if abs(number) > _INT_RANGES[udt] + (1 if number < 0 else 0):
            raise _mismatch(column, value, where, "is out of range")
        return number
    if udt in _FLOAT_MAX:
        if isinstance(value, str):
            word = _FLOAT_WORDS.get(value.strip().lower())
            if word is None:
                try:
                    value = float(value)
                except ValueError:
                    raise _mismatch(column, value, where, "expects a number") from None
            else:
                return word
        if not isinstance(value, int | float):
            raise _mismatch(column, value, where, "expects a number")
        try:
            number = float(value)
        except OverflowError:
            raise _mismatch(column, value, where, "is out of range") from None
        if math.isfinite(number) and abs(number) > _FLOAT_MAX[udt]:
            raise _mismatch(column, value, where, "is out of range")
        return number
    if udt == "numeric":
        try:
            number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except (InvalidOperation, ValueError):
            raise _mismatch(column, value, where, "expects a number") from None
        if number.is_finite() and abs(number.adjusted()) > 131_072:
            raise _mismatch(column, value, where, "is out of range")
        return number
    return value


def _boolean(column: Column, value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _mismatch(column, value, where, "expects true or false")


def _uuid(column: Column, value: Any, where: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise _mismatch(column, value, where, "expects a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _mismatch(column, value, where, "is not a UUID") from None


def _bytea(column: Column, value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise _mismatch(column, value, where, "expects a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _mismatch(column, value, where, "is not valid base64") from None


def _mismatch(column: Column, value: Any, where: str, reason: str) -> InvalidQuery:
    shown = repr(value) if not isinstance(value, dict | list | tuple) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InvalidQuery(f"{where}: {shown} {reason} (column '{column.name}' is {column.type})")
