"""Filter trees to SQL conditions: leaves, ``or``/``and``/``not`` groups, array, JSON-path and full-text operators.

A :class:`Target` turns a name from the query into a checked column and the SQL that
denotes it: a table's column (bare, or qualified by a table alias inside embeds) or, for
``having``, an aggregate of the select. Values always become bound parameters; the only
constants in the text are the compiler's own (``'null'::jsonb``, a built-in text-search
configuration from :data:`functions.engine.model.SEARCH_CONFIGS`).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from functions.engine.coerce import coerce
from functions.engine.model import AndFilter, Filter, NotFilter, OrFilter, is_ref
from functions.engine.refs import Output, Ref, parse_ref
from functions.engine.schema import INTERNAL_TABLES, Column, Schema, Table
from functions.shared.errors import InvalidQuery

COMPARISONS = {op: sql.SQL(f" {text} ") for op, text in
               {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE",
                "ilike": "ILIKE"}.items()}
_CONTAINMENT = {"contains": sql.SQL(" @> "), "contained_by": sql.SQL(" <@ "), "overlaps": sql.SQL(" && ")}
_AND, _OR = sql.SQL(" AND "), sql.SQL(" OR ")
_IS_NULL, _IS_NOT_NULL = sql.SQL(" IS NULL"), sql.SQL(" IS NOT NULL")
_ANY, _ALL, _CAST = sql.SQL(" = ANY(%s"), sql.SQL(" <> ALL(%s"), sql.SQL("::")
_OPEN, _CLOSE, _NOT = sql.SQL("("), sql.SQL(")"), sql.SQL("NOT (")
_WHERE = sql.SQL(" WHERE ")
_PLACEHOLDER = sql.Placeholder()
_PATH = sql.SQL(" #> %s::text[])")
_PATH_TEXT = sql.SQL(" #>> %s::text[])")
_JSONB = sql.SQL("::jsonb")
_JSON_NULL = sql.SQL(" = 'null'::jsonb, true)")
_TSQUERY = sql.SQL("websearch_to_tsquery(")
_TSVECTOR = sql.SQL("to_tsvector(")
_REGCONFIG = sql.SQL("::regconfig, ")
_MATCH = sql.SQL(" @@ ")
_PATH_OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte"})


_COMPOSED_NEW = sql.Composed.__new__


def composed(parts: Sequence[sql.Composable]) -> sql.Composed:
    """``sql.Composed(parts)`` for parts that are all Composables already (everything the compiler builds).

    ``sql.Composed`` checks each part against an abstract base class, which made those checks over half
    of the compile time of an embedded select; the result is the same object either way (a unit test
    compares both renderings).
    """
    out = _COMPOSED_NEW(sql.Composed)
    out._obj = list(parts)
    return out


def sql_join(separator: sql.SQL, parts: Iterable[sql.Composable]) -> sql.Composed:
    """``separator.join(parts)`` without the per-part check (see :func:`composed`)."""
    items: list[sql.Composable] = []
    for part in parts:
        if items:
            items.append(separator)
        items.append(part)
    return composed(items)


@functools.lru_cache(maxsize=8192)
def ident(*names: str) -> sql.Composable:
    """A quoted (possibly dotted) identifier, built once per name.

    The quoting is PostgreSQL's own rule (double quotes around, a double quote inside doubled),
    what ``sql.Identifier`` renders too; done here once per name instead of at every render,
    where it was a third of the time to turn a query's ``Composed`` into text. A NUL, which no
    identifier can hold, is refused as ``sql.Identifier`` would refuse it.
    """
    if any("\x00" in name for name in names):
        raise ValueError("an identifier cannot contain a NUL character")
    return sql.SQL(".".join('"' + name.replace('"', '""') + '"' for name in names))


class Target:
    """Names a query may filter on, and the SQL for each."""

    def resolve(self, name: str, where: str) -> tuple[Column, sql.Composable]:
        raise NotImplementedError


def resolve_table(schema: Schema, name: str, where: str = "table") -> Table:
    table = schema.table(name)
    if table is None or name in INTERNAL_TABLES:
        raise InvalidQuery(f"{where}: unknown table '{name}'{_hint(name, schema.tables)}")
    return table


def resolve_column(table: Table, name: str, where: str) -> Column:
    column = table.column(name)
    if column is None:
        raise InvalidQuery(f"{where}: unknown column '{name}' in table '{table.name}'{_hint(name, table.columns)}")
    return column


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, [k for k in known if k not in INTERNAL_TABLES], n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True, slots=True)
class TableTarget(Target):
    """A table's columns, bare (``"status"``) or qualified by the alias the statement gives the table."""

    table: Table
    qualifier: str | None = None

    def resolve(self, name: str, where: str) -> tuple[Column, sql.Composable]:
        column = resolve_column(self.table, name, where)
        return column, (ident(self.qualifier, column.name) if self.qualifier else ident(column.name))


@dataclass(slots=True)
class Binder:
    """Collects parameters in text order; ``earlier`` is the batch so far (None outside a batch)."""

    params: list[Any]
    earlier: Sequence[Output] | None = None

    def param(self, column: Column, value: Any, where: str) -> sql.Composable:
        """One bound value for ``column``, with a cast when Postgres cannot infer it (arrays, references)."""
        if is_ref(value):
            self.params.append(self.ref(value, column, where))
            if column.is_json:
                return _PLACEHOLDER
            return composed([_PLACEHOLDER, _CAST, ident(column.udt_schema, column.udt)])
        self.params.append(coerce(column, value, where))
        if column.is_array:
            return composed([_PLACEHOLDER, _CAST, ident(column.udt_schema, column.udt)])
        return _PLACEHOLDER

    def ref(self, value: Any, column: Column, where: str, *, many: bool = False) -> Ref:
        return parse_ref(value, where, self.earlier, many=many, json=column.is_json)

    def items(self, column: Column, value: Any, where: str) -> list[Any]:
        """The list of an ``in``-like filter: literal items, references to one row, or a ``N.*.col`` list."""
        if is_ref(value):
            return [self.ref(value, column, where, many=True)]
        items: list[Any] = []
        for i, item in enumerate(value or ()):
            at = f"{where}[{i}]"
            items.append(self.ref(item, column, at) if is_ref(item) else coerce(column, item, at))
        return items


def where_clause(items: tuple[Any, ...], target: Target, binder: Binder, where: str = "filters"
                 ) -> list[sql.Composable]:
    if not items:
        return []
    return [_WHERE, conjunction(items, target, binder, where)]


def conjunction(items: tuple[Any, ...], target: Target, binder: Binder, where: str) -> sql.Composable:
    return sql_join(_AND, [condition(item, target, binder, f"{where}[{i}]") for i, item in enumerate(items)])


def condition(item: Any, target: Target, binder: Binder, where: str) -> sql.Composable:
    if type(item) is Filter:
        return _leaf(item, target, binder, where)
    if isinstance(item, OrFilter):
        inner = sql_join(_OR, [condition(c, target, binder, f"{where}.or[{i}]") for i, c in enumerate(item.any_of)])
        return composed([_OPEN, inner, _CLOSE])
    if isinstance(item, AndFilter):
        return composed([_OPEN, conjunction(item.all_of, target, binder, f"{where}.and"), _CLOSE])
    if isinstance(item, NotFilter):
        return composed([_NOT, condition(item.negated, target, binder, f"{where}.not"), _CLOSE])
    return _leaf(item, target, binder, where)


def _leaf(f: Filter, target: Target, binder: Binder, where: str) -> sql.Composable:
    column, expr = target.resolve(f.column, f"{where}.column")
    if f.path is not None:
        return _json_path(f, column, expr, binder, where)
    if f.op == "is_null":
        return composed([expr, _IS_NULL])
    if f.op == "not_null":
        return composed([expr, _IS_NOT_NULL])
    if f.op in ("in", "not_in"):
        if column.is_array:
            raise InvalidQuery(f"{where}.op: '{f.op}' does not apply to array column '{column.name}' "
                               "(use contains, contained_by or overlaps)")
        items = binder.items(column, f.value, f"{where}.value")
        if any(item is None for item in items):
            raise InvalidQuery(f"{where}.value: an '{f.op}' list cannot hold null (add an is_null filter instead)")
        binder.params.append(items)
        cast: list[sql.Composable] = ([_CAST, ident(column.udt_schema, column.array_udt)]
                                      if column.array_udt and not column.is_json else [])
        return composed([expr, _ANY if f.op == "in" else _ALL, *cast, _CLOSE])
    if f.op in _CONTAINMENT:
        return _containment(f, column, expr, binder, where)
    if f.op == "search":
        return _search(f, column, expr, binder, where)
    if f.op in ("like", "ilike") and column.category != "S":
        raise InvalidQuery(f"{where}.op: '{f.op}' applies to text columns; '{column.name}' is {column.type}")
    return composed([expr, COMPARISONS[f.op], binder.param(column, f.value, f"{where}.value")])


def _containment(f: Filter, column: Column, expr: sql.Composable, binder: Binder, where: str) -> sql.Composable:
    operator = _CONTAINMENT[f.op]
    if column.is_array:
        if isinstance(f.value, dict) and not is_ref(f.value):
            raise InvalidQuery(f"{where}.value: '{f.op}' on array column '{column.name}' needs a list")
        items = binder.items(_element(column), f.value, f"{where}.value")
        binder.params.append(items)
        return composed([expr, operator, _PLACEHOLDER, _CAST, ident(column.udt_schema, column.udt)])
    if column.udt == "jsonb" and f.op != "overlaps":
        binder.params.append(binder.ref(f.value, column, f"{where}.value") if is_ref(f.value) else Jsonb(
            list(f.value) if isinstance(f.value, tuple) else f.value))
        return composed([expr, operator, _PLACEHOLDER])
    kinds = "array columns" if f.op == "overlaps" else "array and jsonb columns"
    raise InvalidQuery(f"{where}.op: '{f.op}' applies to {kinds}; '{column.name}' is {column.type}")


def _element(column: Column) -> Column:
    """The element type of an array column, for checking the items of a containment list."""
    udt = column.udt.removeprefix("_")
    category = "N" if udt.startswith(("int", "float", "numeric")) else "B" if udt == "bool" else "S"
    return Column(name=column.name, type=column.type.removesuffix("[]"), udt=udt, udt_schema=column.udt_schema,
                  category=category, array_udt=column.udt, nullable=True)


def _search(f: Filter, column: Column, expr: sql.Composable, binder: Binder, where: str) -> sql.Composable:
    """Full-text search with web-search syntax (``red shoes -used "exact phrase" or boots``)."""
    if column.udt != "tsvector" and column.category != "S":
        raise InvalidQuery(f"{where}.op: 'search' applies to text and tsvector columns; '{column.name}' is "
                           f"{column.type}")
    text = Column(name=column.name, type="text", udt="text", category="S")
    config: list[sql.Composable] = [sql.Literal(f.config), _REGCONFIG] if f.config else []
    document = expr if column.udt == "tsvector" else composed([_TSVECTOR, *config, expr, _CLOSE])
    return composed([document, _MATCH, _TSQUERY, *config, binder.param(text, f.value, f"{where}.value"),
                         _CLOSE])


def _json_path(f: Filter, column: Column, expr: sql.Composable, binder: Binder, where: str) -> sql.Composable:
    """Compare the value at ``path`` inside a json/jsonb column, as JSON (so ``3 > 2.5`` and ``"b" > "a"``).

    ``like``/``ilike`` compare its text; ``is_null`` matches a missing key or a JSON null.
    """
    if not column.is_json:
        raise InvalidQuery(f"{where}.path: applies to json and jsonb columns; '{column.name}' is {column.type}")
    binder.params.append([str(key) for key in f.path or ()])
    if f.op in ("like", "ilike"):
        text = Column(name=column.name, type="text", udt="text", category="S")
        return composed([_OPEN, expr, _PATH_TEXT, COMPARISONS[f.op], binder.param(text, f.value,
                                                                                      f"{where}.value")])
    value = composed([_OPEN, expr, _PATH, *([_JSONB] if column.udt == "json" else [])])
    document = Column(name=column.name, type="jsonb", udt="jsonb", category="U")
    if f.op in ("is_null", "not_null"):
        test = composed([sql.SQL("COALESCE("), value, _JSON_NULL])
        return test if f.op == "is_null" else composed([_NOT, test, _CLOSE])
    if f.op in ("in", "not_in"):
        items = binder.items(document, f.value, f"{where}.value")
        binder.params.append(items)
        return composed([value, _ANY if f.op == "in" else _ALL, _CAST, ident("pg_catalog", "_jsonb"), _CLOSE])
    if f.op not in _PATH_OPS:
        raise InvalidQuery(f"{where}.op: '{f.op}' does not take a path")
    return composed([value, COMPARISONS[f.op], binder.param(document, f.value, f"{where}.value")])
