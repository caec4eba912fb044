"""Selects to SQL: plain, DISTINCT, GROUP BY with aggregates, foreign-key embeds, and exact counts.

Every form is **one** statement. Embeds become ``LEFT JOIN LATERAL`` subqueries that
aggregate the related rows with ``json_agg`` (to-many) or ``row_to_json`` (to-one), nested
as deep as the query nests them, over the page of parent rows (the parent's filters,
order and limit run first, in a subquery, so related rows are only built for the rows
returned). ``inner: true`` adds an ``EXISTS`` on the related table to the parent's filters.
A count next to the rows joins the page to a ``count(*)`` of the same filters; numbering
the page rows keeps their order through the join. Table aliases inside embeds (``e1``,
``j1``, ``x``) are the compiler's own names, never the caller's.

Like today's selects, a page fetches ``limit + 1`` rows so truncation can be reported.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from psycopg import sql

from functions.engine.conditions import (
    Binder,
    TableTarget,
    Target,
    composed,
    conjunction,
    ident,
    resolve_column,
    resolve_table,
    sql_join,
    where_clause,
)
from functions.engine.model import MAX_LIMIT, Aggregate, Embed, SelectQuery, walk_embeds
from functions.engine.schema import Column, ForeignKey, Schema, Table
from functions.shared.errors import InvalidQuery

TOTAL, ROW = "__flux_total", "__flux_row"
_DIRECTIONS = {"asc": sql.SQL(" ASC"), "desc": sql.SQL(" DESC")}
_COMMA, _AND = sql.SQL(", "), sql.SQL(" AND ")
_SELECT, _DISTINCT, _FROM = sql.SQL("SELECT "), sql.SQL("SELECT DISTINCT "), sql.SQL(" FROM ")
_WHERE, _ORDER_BY, _GROUP_BY, _HAVING = sql.SQL(" WHERE "), sql.SQL(" ORDER BY "), sql.SQL(" GROUP BY "), \
    sql.SQL(" HAVING ")
_LIMIT, _OFFSET, _LIMIT_ONE = sql.SQL(" LIMIT %s"), sql.SQL(" OFFSET %s"), sql.SQL(" LIMIT 1")
_STAR, _AS, _EQ = sql.SQL("*"), sql.SQL(" AS "), sql.SQL(" = ")
_OPEN, _CLOSE = sql.SQL("("), sql.SQL(")")
_LATERAL, _ON_TRUE = sql.SQL(" LEFT JOIN LATERAL ("), sql.SQL(" ON true")
_MANY = sql.SQL("SELECT coalesce(json_agg({x}), '[]'::json) AS {v} FROM (")
_ONE = sql.SQL("SELECT row_to_json({x}) AS {v} FROM (")
_EXISTS = sql.SQL("EXISTS (SELECT 1 FROM ")
_COUNT_STAR = sql.SQL("count(*)")
_COUNT_OF = sql.SQL("SELECT count(*) AS {total} FROM (")
_WITH_COUNT = sql.SQL("SELECT {c}.{total}, {p}.* FROM (")
_NUMBERED = sql.SQL(" LEFT JOIN LATERAL (SELECT row_number() OVER () AS {row}, {p0}.* FROM (")
_SUMMABLE = frozenset("N")
_ORDERABLE = frozenset("NSDT")
_X, _V = ident("x"), ident("v")


@dataclass(slots=True)
class _Aliases:
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next(self) -> int:
        return next(self.counter)


@dataclass(frozen=True, slots=True)
class Relation:
    """How an embedded table joins its parent: pairs of (child column, parent column)."""

    many: bool
    pairs: tuple[tuple[str, str], ...]
    key: ForeignKey


def compile_select(q: SelectQuery, table: Table, schema: Schema, binder: Binder) -> sql.Composed:
    if q.count is None:
        return _rows(q, table, schema, binder)
    for name in (TOTAL, ROW):
        if name in table.columns:
            raise InvalidQuery(f"table: '{table.name}' has a column named {name}, which the engine reserves")
    counted = _count(q, table, schema, binder)
    if q.limit == 0:
        return counted
    parts: list[sql.Composable] = [_WITH_COUNT.format(c=ident("c"), total=ident(TOTAL), p=ident("p")), counted,
                                   _CLOSE, _AS, ident("c"), _NUMBERED.format(row=ident(ROW), p0=ident("p0")),
                                   _rows(q, table, schema, binder), _CLOSE, _AS, ident("p0"), _CLOSE, _AS,
                                   ident("p"), _ON_TRUE, _ORDER_BY, ident("p", ROW)]
    return composed(parts)


def output_columns(q: SelectQuery, table: Table) -> frozenset[str]:
    """The keys of each returned row (what a later query of a batch may reference)."""
    if q.aggregates or q.group_by:
        return frozenset(q.columns or q.group_by or ()) | {a.name for a in q.aggregates or ()}
    names = set(q.columns) if q.columns is not None else set(table.columns)
    return frozenset(names | set(q.embed or {}))


# -- the rows -------------------------------------------------------------------------------------------

def _rows(q: SelectQuery, table: Table, schema: Schema, binder: Binder) -> sql.Composed:
    if q.embed:
        return _embedded(q, table, schema, binder)
    if q.aggregates or q.group_by:
        return _grouped(q, table, binder, paged=True)
    return _plain(q, table, binder, paged=True)


def _plain(q: SelectQuery, table: Table, binder: Binder, *, paged: bool) -> sql.Composed:
    if q.columns is None:
        columns: sql.Composable = _STAR
    else:
        columns = sql_join(_COMMA, [ident(resolve_column(table, c, f"columns[{i}]").name)
                                    for i, c in enumerate(q.columns)])
    if q.distinct and q.columns is not None:
        for i, o in enumerate(q.order):
            if o.column not in q.columns:
                raise InvalidQuery(f"order[{i}].column: with distinct, the order columns must be selected; "
                                   f"add '{o.column}' to columns")
    parts: list[sql.Composable] = [_DISTINCT if q.distinct else _SELECT, columns, _FROM, ident(table.name)]
    target = TableTarget(table)
    parts += where_clause(q.filters, target, binder)
    if paged:
        parts += _order(q, target)
        parts += _limit(q, binder)
    return composed(parts)


def _order(q: SelectQuery | Embed, target: Target, where: str = "order") -> list[sql.Composable]:
    if not q.order:
        return []
    keys = [composed([target.resolve(o.column, f"{where}[{i}].column")[1], _DIRECTIONS[o.direction]])
            for i, o in enumerate(q.order)]
    return [_ORDER_BY, sql_join(_COMMA, keys)]


def _limit(q: SelectQuery, binder: Binder) -> list[sql.Composable]:
    binder.params.append((q.limit if q.limit is not None else MAX_LIMIT) + 1)
    if not q.offset:
        return [_LIMIT]
    binder.params.append(q.offset)
    return [_LIMIT, _OFFSET]


def _count(q: SelectQuery, table: Table, schema: Schema, binder: Binder) -> sql.Composed:
    """``count(*)`` of every row the filters select (groups for GROUP BY, distinct rows for DISTINCT)."""
    if q.aggregates or q.group_by:
        inner = _grouped(q, table, binder, paged=False)
    elif q.distinct:
        inner = _plain(q, table, binder, paged=False)
    else:
        parts: list[sql.Composable] = [_SELECT, _COUNT_STAR, _AS, ident(TOTAL), _FROM, ident(table.name)]
        parts += _base_where(q, table, schema, binder, _Aliases())
        return composed(parts)
    return composed([_COUNT_OF.format(total=ident(TOTAL)), inner, _CLOSE, _AS, ident("q")])


# -- GROUP BY and aggregates -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _AggregateTarget(Target):
    """``having`` and ``order`` name aggregates by their result key."""

    table: Table
    aggregates: dict[str, tuple[Column, sql.Composable]]
    groups: frozenset[str]
    for_order: bool = False

    def resolve(self, name: str, where: str) -> tuple[Column, sql.Composable]:
        if name in self.aggregates:
            column, expr = self.aggregates[name]
            return column, (ident(name) if self.for_order else expr)
        if self.for_order and name in self.groups:
            return resolve_column(self.table, name, where), ident(name)
        known = ", ".join(sorted(self.aggregates) + (sorted(self.groups) if self.for_order else []))
        raise InvalidQuery(f"{where}: '{name}' is not {'a group column or ' if self.for_order else ''}an aggregate "
                           f"of this query (known: {known})")


def _grouped(q: SelectQuery, table: Table, binder: Binder, *, paged: bool) -> sql.Composed:
    groups = [resolve_column(table, c, f"group_by[{i}]").name for i, c in enumerate(q.group_by or ())]
    if q.columns is not None:
        for i, c in enumerate(q.columns):
            resolve_column(table, c, f"columns[{i}]")
            if c not in groups:
                raise InvalidQuery(f"columns[{i}]: '{c}' must be in group_by to be selected next to aggregates"
                                   if groups else f"columns[{i}]: selecting '{c}' next to aggregates needs "
                                                  f"group_by: ['{c}']")
    selected = list(q.columns) if q.columns is not None else groups
    aggregates: dict[str, tuple[Column, sql.Composable]] = {}
    for i, aggregate in enumerate(q.aggregates or ()):
        name = aggregate.name
        if name in aggregates or name in selected:
            raise InvalidQuery(f"aggregates[{i}].as: '{name}' is already a result column; give it another name "
                               "with 'as'")
        aggregates[name] = _aggregate(aggregate, table, f"aggregates[{i}]")
    items: list[sql.Composable] = [ident(c) for c in selected]
    items += [composed([expr, _AS, ident(name)]) for name, (_, expr) in aggregates.items()]
    parts: list[sql.Composable] = [_SELECT, sql_join(_COMMA, items), _FROM, ident(table.name)]
    parts += where_clause(q.filters, TableTarget(table), binder)
    if groups:
        parts += [_GROUP_BY, sql_join(_COMMA, [ident(c) for c in groups])]
    if q.having:
        target = _AggregateTarget(table, aggregates, frozenset(groups))
        parts += [_HAVING, conjunction(q.having, target, binder, "having")]
    if paged:
        parts += _order(q, _AggregateTarget(table, aggregates, frozenset(groups), for_order=True))
        parts += _limit(q, binder)
    return composed(parts)


def _aggregate(aggregate: Aggregate, table: Table, where: str) -> tuple[Column, sql.Composable]:
    """The SQL of one aggregate and a column describing its result (to check ``having`` values)."""
    if aggregate.column is None:
        return Column(name="count", type="bigint", udt="int8", category="N"), _COUNT_STAR
    column = resolve_column(table, aggregate.column, f"{where}.column")
    fn = aggregate.fn
    if fn in ("sum", "avg") and column.category not in _SUMMABLE:
        raise InvalidQuery(f"{where}.fn: '{fn}' needs a numeric column; '{column.name}' is {column.type}")
    if fn in ("min", "max") and column.category not in _ORDERABLE:
        raise InvalidQuery(f"{where}.fn: '{fn}' needs a number, text or date/time column; '{column.name}' is "
                           f"{column.type}")
    argument: sql.Composable = ident(column.name)
    if aggregate.distinct:
        argument = composed([sql.SQL("DISTINCT "), argument])
    expr = composed([sql.SQL(fn), _OPEN, argument, _CLOSE])
    if fn == "count":
        result = Column(name=aggregate.name, type="bigint", udt="int8", category="N")
    elif fn in ("sum", "avg"):
        result = Column(name=aggregate.name, type="numeric", udt="numeric", category="N")
    else:
        result = column
    return result, expr


# -- embeds ----------------------------------------------------------------------------------------------

def relation(parent: Table, child: Table, via: str | None, where: str) -> Relation:
    """The foreign key joining ``child`` to ``parent``, in whichever direction it is declared."""
    found: list[Relation] = []
    for fk in parent.foreign_keys:
        if fk.ref_table == child.name:
            found.append(Relation(False, tuple(zip(fk.ref_columns, fk.columns, strict=True)), fk))
    for fk in child.foreign_keys:
        if fk.ref_table == parent.name:
            found.append(Relation(True, tuple(zip(fk.columns, fk.ref_columns, strict=True)), fk))
    if via is not None:
        found = [r for r in found if via in (r.key.name, *r.key.columns)]
    if not found:
        how = f" through '{via}'" if via else ""
        views = " (views have no foreign keys: embed from or into their base tables)" \
            if "view" in (parent.kind + child.kind) else ""
        raise InvalidQuery(f"{where}: no foreign key links '{parent.name}' and '{child.name}'{how}{views}")
    if len(found) > 1:
        names = ", ".join(f"{r.key.name} ({', '.join(r.key.columns)})" for r in found)
        hint = "" if via is None else " (a table that references itself needs another way to tell the sides apart)"
        raise InvalidQuery(f"{where}: '{parent.name}' and '{child.name}' are linked by several foreign keys: "
                           f"{names}; name one with via: '<column or constraint>'{hint}")
    return found[0]


def _embedded(q: SelectQuery, table: Table, schema: Schema, binder: Binder) -> sql.Composed:
    aliases = _Aliases()
    for alias in q.embed or {}:
        if alias in table.columns and (q.columns is None or alias in q.columns):
            raise InvalidQuery(f"embed.{alias}: '{alias}' is also a column of '{table.name}'; pick another alias")
    base: list[sql.Composable] = [_SELECT, _STAR, _FROM, ident(table.name)]
    base += _base_where(q, table, schema, binder, aliases)
    base += _order(q, TableTarget(table))
    base += _limit(q, binder)
    outer = TableTarget(table, table.name)
    if q.columns is None:
        items: list[sql.Composable] = [composed([ident(table.name), sql.SQL("."), _STAR])]
    else:
        items = [outer.resolve(c, f"columns[{i}]")[1] for i, c in enumerate(q.columns)]
    joins: list[sql.Composable] = []
    for alias, embed in (q.embed or {}).items():
        item, join = _join(alias, embed, table, table.name, schema, binder, aliases, f"embed.{alias}")
        items.append(item)
        joins.append(join)
    parts: list[sql.Composable] = [_SELECT, sql_join(_COMMA, items), _FROM, _OPEN, composed(base), _CLOSE, _AS,
                                   ident(table.name), *joins]
    parts += _order(q, outer)
    return composed(parts)


def _base_where(q: SelectQuery | Embed, table: Table, schema: Schema, binder: Binder, aliases: _Aliases,
                qualifier: str | None = None, join: list[sql.Composable] | None = None,
                where: str = "") -> list[sql.Composable]:
    """The filters of one level, plus the join to its parent and an ``EXISTS`` per ``inner`` embed."""
    target = TableTarget(table, qualifier)
    conditions: list[sql.Composable] = list(join or [])
    if q.filters:
        conditions.append(conjunction(q.filters, target, binder, f"{where}filters"))
    for alias, embed in (q.embed or {}).items():
        if embed.inner:
            conditions.append(_exists(embed, table, qualifier or table.name, schema, binder, aliases,
                                      f"{where}embed.{alias}"))
    return [_WHERE, sql_join(_AND, conditions)] if conditions else []


def _exists(embed: Embed, parent: Table, parent_name: str, schema: Schema, binder: Binder, aliases: _Aliases,
            where: str) -> sql.Composable:
    child = resolve_table(schema, embed.table, f"{where}.table")
    rel = relation(parent, child, embed.via, where)
    name = f"e{aliases.next()}"
    join = [_pair(name, c, parent_name, p) for c, p in rel.pairs]
    target = TableTarget(child, name)
    conditions = join + ([conjunction(embed.filters, target, binder, f"{where}.filters")] if embed.filters else [])
    return composed([_EXISTS, ident(child.name), _AS, ident(name), _WHERE, sql_join(_AND, conditions), _CLOSE])


def _pair(child: str, child_column: str, parent: str, parent_column: str) -> sql.Composable:
    return composed([ident(child, child_column), _EQ, ident(parent, parent_column)])


def _join(alias: str, embed: Embed, parent: Table, parent_name: str, schema: Schema, binder: Binder,
          aliases: _Aliases, where: str) -> tuple[sql.Composable, sql.Composable]:
    """The select item (``"j1"."v" AS "items"``) and the lateral join that builds it."""
    child = resolve_table(schema, embed.table, f"{where}.table")
    rel = relation(parent, child, embed.via, where)
    if not rel.many and (embed.order or embed.limit is not None or embed.offset):
        raise InvalidQuery(f"{where}: '{child.name}' is to-one from '{parent.name}' (through "
                           f"{', '.join(rel.key.columns)}); order, limit and offset only apply to to-many embeds")
    number = aliases.next()
    name, joined = f"e{number}", f"j{number}"
    target = TableTarget(child, name)
    for nested in embed.embed or {}:
        if nested in child.columns and (embed.columns is None or nested in embed.columns):
            raise InvalidQuery(f"{where}.embed.{nested}: '{nested}' is also a column of '{child.name}'; "
                               "pick another alias")
    if embed.columns is None:
        items: list[sql.Composable] = [composed([ident(name), sql.SQL("."), _STAR])]
    else:
        items = [target.resolve(c, f"{where}.columns[{i}]")[1] for i, c in enumerate(embed.columns)]
    joins: list[sql.Composable] = []
    for nested_alias, nested in (embed.embed or {}).items():
        item, join = _join(nested_alias, nested, child, name, schema, binder, aliases,
                           f"{where}.embed.{nested_alias}")
        items.append(item)
        joins.append(join)
    on = [_pair(name, c, parent_name, p) for c, p in rel.pairs]
    inner: list[sql.Composable] = [_SELECT, sql_join(_COMMA, items), _FROM, ident(child.name), _AS, ident(name), *joins]
    inner += _base_where(embed, child, schema, binder, aliases, name, on, f"{where}.")
    if rel.many:
        inner += _order(embed, target, f"{where}.order")
        binder.params.append(embed.limit if embed.limit is not None else MAX_LIMIT)
        inner.append(_LIMIT)
        if embed.offset:
            binder.params.append(embed.offset)
            inner.append(_OFFSET)
    else:
        inner.append(_LIMIT_ONE)
    head = (_MANY if rel.many else _ONE).format(x=_X, v=_V)
    join = composed([_LATERAL, head, composed(inner), _CLOSE, _AS, _X, _CLOSE, _AS, ident(joined),
                         _ON_TRUE])
    return composed([ident(joined, "v"), _AS, ident(alias)]), join


def embed_summary(q: SelectQuery) -> list[str]:
    """``["items:order_items", "items.product:products"]``: what a span says about a query's embeds."""
    return [f"{path.removeprefix('embed.').replace('.embed.', '.')}:{embed.table}"
            for path, embed in walk_embeds(q.embed, "embed")]

