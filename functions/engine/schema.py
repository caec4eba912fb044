"""The database schema as the engine sees it: tables, typed columns, keys and indexes.

Built from the catalog by :mod:`functions.engine.introspect` and treated as the allowlist
of identifiers: the compiler refuses any table or column that is not in here, so a name
from user code reaches SQL only after it was found in the live schema. Only the ``public``
schema is visible; the engine's own bookkeeping tables are hidden.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: Tables the engine manages itself; user code and the schema graph never see them.
INTERNAL_TABLES = frozenset({"flux_migrations"})


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str                    # format_type(): "character varying(120)", "integer", "text[]"
    udt: str                     # pg_type.typname of the (domain's base) type: "varchar", "int4", "_text"
    udt_schema: str = "pg_catalog"
    category: str = "S"          # pg_type.typcategory: N numeric, S string, B bool, D datetime, A array, U user...
    array_udt: str | None = None  # typname of the array of this type, used to cast `in` lists
    nullable: bool = True
    has_default: bool = False

    @property
    def is_json(self) -> bool:
        return self.udt in ("json", "jsonb")

    @property
    def is_array(self) -> bool:
        return self.category == "A"


@dataclass(frozen=True, slots=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    columns: tuple[str | None, ...]  # None for an expression column
    unique: bool = False
    primary: bool = False
    partial: bool = False
    method: str = "btree"
    descending: tuple[bool, ...] = ()   # per key column: sorted DESC
    definition: str = ""                # pg_get_indexdef(): the exact CREATE INDEX statement


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    indexes: tuple[Index, ...] = ()
    kind: str = "table"          # table | view | materialized_view | foreign_table | partitioned_table
    row_estimate: int = 0
    base_tables: tuple[str, ...] = ()  # for a view: the tables it reads, through other views too (pg_rewrite)

    @property
    def is_view(self) -> bool:
        return self.kind in ("view", "materialized_view")

    def column(self, name: str) -> Column | None:
        return self.columns.get(name)

    def unique_keys(self) -> list[frozenset[str]]:
        """Column sets an ``ON CONFLICT`` target may name: the primary key and full unique indexes."""
        keys = [frozenset(self.primary_key)] if self.primary_key else []
        for index in self.indexes:
            if index.unique and not index.partial and None not in index.columns:
                keys.append(frozenset(c for c in index.columns if c is not None))
        return keys

    def leading_columns(self) -> list[tuple[str, ...]]:
        """Each usable (non-partial btree) index's column list, for the index advisor."""
        return [tuple(c for c in index.columns if c is not None) for index in self.indexes
                if not index.partial and index.method == "btree" and index.columns and index.columns[0] is not None]


@dataclass(frozen=True, slots=True)
class Schema:
    tables: dict[str, Table] = field(default_factory=dict)

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def reads(self, names: Iterable[str]) -> frozenset[str]:
        """The relations a query over ``names`` depends on: themselves and, for views, their base tables.

        A cached result is registered under all of them, so a write to a base table drops
        the cached rows of every view built on it.
        """
        out = set(names)
        for name in list(out):
            table = self.tables.get(name)
            if table is not None:
                out.update(table.base_tables)
        return frozenset(out)

    def referencing(self, name: str) -> list[tuple[Table, ForeignKey]]:
        """The (table, foreign key) pairs whose key points at ``name``."""
        return [(t, fk) for t in self.tables.values() for fk in t.foreign_keys if fk.ref_table == name]

    def to_graph(self, suggested_indexes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The ``/schema/graph`` document (DESIGN §4)."""
        return {
            "tables": [_table_graph(t) for t in sorted(self.tables.values(), key=lambda t: t.name)],
            "suggested_indexes": list(suggested_indexes or []),
        }


def _table_graph(table: Table) -> dict[str, Any]:
    return {
        "name": table.name,
        "kind": table.kind,
        "row_estimate": table.row_estimate,
        "columns": [{"name": c.name, "type": c.type, "nullable": c.nullable, "has_default": c.has_default}
                    for c in table.columns.values()],
        "primary_key": list(table.primary_key),
        "base_tables": list(table.base_tables),
        "foreign_keys": [{"name": fk.name, "columns": list(fk.columns), "ref_table": fk.ref_table,
                          "ref_columns": list(fk.ref_columns)} for fk in table.foreign_keys],
        "indexes": [{"name": ix.name, "columns": [c if c is not None else "(expression)" for c in ix.columns],
                     "descending": [bool(d) for d in ix.descending] or [False] * len(ix.columns),
                     "unique": ix.unique, "primary": ix.primary, "partial": ix.partial, "method": ix.method,
                     "definition": ix.definition or index_definition(table.name, ix)}
                    for ix in table.indexes],
    }


def index_definition(table: str, index: Index) -> str:
    """A CREATE INDEX statement for an index known only by its parts (what pg_get_indexdef would say)."""
    keys = []
    for i, column in enumerate(index.columns):
        key = column if column is not None else "(expression)"
        if i < len(index.descending) and index.descending[i]:
            key += " DESC"
        keys.append(key)
    unique = "UNIQUE " if index.unique else ""
    return f"CREATE {unique}INDEX {index.name} ON public.{table} USING {index.method} ({', '.join(keys)})"
