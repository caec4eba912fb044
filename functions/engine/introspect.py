"""Read the ``public`` schema from pg_catalog into a :class:`Schema`.

Four catalog queries (columns, indexes, foreign keys, the base tables of views) and a pure :func:`build_schema`
that assembles their rows, so the same logic serves the async engine and the
synchronous CLI / advisor. Domains are resolved to their base type so the compiler
converts values by what Postgres will actually store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from functions.engine.schema import INTERNAL_TABLES, Column, ForeignKey, Index, Schema, Table

COLUMNS_SQL = """
SELECT c.relname AS table_name, c.relkind::text AS relkind, c.reltuples::bigint AS row_estimate,
       a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS data_type,
       t.typname AS udt, tn.nspname AS udt_schema, t.typcategory::text AS category,
       arr.typname AS array_udt, NOT a.attnotnull AS nullable,
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t0 ON t0.oid = a.atttypid
JOIN pg_type t ON t.oid = CASE WHEN t0.typtype = 'd' THEN t0.typbasetype ELSE t0.oid END
JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_type arr ON arr.oid = t.typarray
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

INDEXES_SQL = """
SELECT t.relname AS table_name, i.relname AS index_name, ix.indisunique AS is_unique,
       ix.indisprimary AS is_primary, ix.indpred IS NOT NULL AS is_partial, am.amname AS method,
       ARRAY(SELECT a.attname FROM generate_series(0, ix.indnkeyatts - 1) AS s(k)
             LEFT JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = ix.indkey[s.k]
             ORDER BY s.k) AS columns,
       ARRAY(SELECT (ix.indoption[s.k] & 1) = 1 FROM generate_series(0, ix.indnkeyatts - 1) AS s(k)
             ORDER BY s.k) AS descending,
       pg_get_indexdef(ix.indexrelid) AS definition
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
WHERE n.nspname = 'public' AND ix.indisvalid
ORDER BY t.relname, ix.indisprimary DESC, i.relname
"""

FOREIGN_KEYS_SQL = """
SELECT con.conname AS name, t.relname AS table_name, rt.relname AS ref_table,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord) AS columns,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord) AS ref_columns
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class rt ON rt.oid = con.confrelid
WHERE con.contype = 'f' AND n.nspname = 'public'
ORDER BY t.relname, con.conname
"""

# Views and materialized views: the relations their rewrite rule reads (pg_depend on pg_rewrite).
VIEW_BASES_SQL = """
SELECT DISTINCT v.relname AS view_name, b.relname AS base_name
FROM pg_rewrite r
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace vn ON vn.oid = v.relnamespace
JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
JOIN pg_class b ON b.oid = d.refobjid
JOIN pg_namespace bn ON bn.oid = b.relnamespace
WHERE vn.nspname = 'public' AND bn.nspname = 'public' AND v.relkind IN ('v', 'm') AND b.oid <> v.oid
  AND b.relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY 1, 2
"""

_KINDS = {"r": "table", "p": "partitioned_table", "v": "view", "m": "materialized_view", "f": "foreign_table"}


def build_schema(columns: Iterable[dict[str, Any]], indexes: Iterable[dict[str, Any]],
                 foreign_keys: Iterable[dict[str, Any]], view_bases: Iterable[dict[str, Any]] = ()) -> Schema:
    """Assemble catalog rows (as dicts, in the shape of the queries above) into a Schema."""
    cols: dict[str, dict[str, Column]] = {}
    meta: dict[str, tuple[str, int]] = {}
    for row in columns:
        name = row["table_name"]
        if name in INTERNAL_TABLES:
            continue
        meta[name] = (_KINDS.get(row["relkind"], "table"), max(0, int(row["row_estimate"] or 0)))
        cols.setdefault(name, {})[row["column_name"]] = Column(
            name=row["column_name"], type=row["data_type"], udt=row["udt"], udt_schema=row["udt_schema"],
            category=row["category"], array_udt=row["array_udt"], nullable=bool(row["nullable"]),
            has_default=bool(row["has_default"]))
    idx: dict[str, list[Index]] = {}
    for row in indexes:
        idx.setdefault(row["table_name"], []).append(Index(
            name=row["index_name"], columns=tuple(row["columns"]), unique=bool(row["is_unique"]),
            primary=bool(row["is_primary"]), partial=bool(row["is_partial"]), method=row["method"],
            descending=tuple(bool(d) for d in row.get("descending") or ()), definition=row.get("definition") or ""))
    fks: dict[str, list[ForeignKey]] = {}
    for row in foreign_keys:
        fks.setdefault(row["table_name"], []).append(ForeignKey(
            name=row["name"], columns=tuple(row["columns"]), ref_table=row["ref_table"],
            ref_columns=tuple(row["ref_columns"])))
    bases = _base_tables(view_bases, meta)
    tables = {}
    for name, columns_of in cols.items():
        indexes_of = tuple(idx.get(name, ()))
        primary = next((ix for ix in indexes_of if ix.primary), None)
        kind, estimate = meta[name]
        tables[name] = Table(
            name=name, columns=columns_of, kind=kind, row_estimate=estimate,
            primary_key=tuple(c for c in primary.columns if c is not None) if primary else (),
            foreign_keys=tuple(fks.get(name, ())), indexes=indexes_of, base_tables=bases.get(name, ()))
    return Schema(tables=tables)


def _base_tables(view_bases: Iterable[dict[str, Any]], meta: dict[str, tuple[str, int]]
                 ) -> dict[str, tuple[str, ...]]:
    """Each view's base tables, following views of views down to tables (cycles cannot occur, but are cut)."""
    direct: dict[str, set[str]] = {}
    for row in view_bases:
        direct.setdefault(row["view_name"], set()).add(row["base_name"])

    def tables_of(name: str, seen: frozenset[str]) -> set[str]:
        out: set[str] = set()
        for base in direct.get(name, ()):
            if base in seen:
                continue
            if meta.get(base, ("table", 0))[0] in ("view", "materialized_view"):
                out.add(base)   # a view read by a view: its cache must go too when its own bases change
                out |= tables_of(base, seen | {base})
            else:
                out.add(base)
        return out

    return {view: tuple(sorted(tables_of(view, frozenset({view})))) for view in direct}


def load_schema(conn: psycopg.Connection[Any]) -> Schema:
    """Introspect with a synchronous connection (CLI, advisor, engine Lambda)."""
    with conn.cursor(row_factory=dict_row) as cur:
        columns = cur.execute(COLUMNS_SQL).fetchall()
        indexes = cur.execute(INDEXES_SQL).fetchall()
        foreign_keys = cur.execute(FOREIGN_KEYS_SQL).fetchall()
        view_bases = cur.execute(VIEW_BASES_SQL).fetchall()
    return build_schema(columns, indexes, foreign_keys, view_bases)


async def load_schema_async(conn: psycopg.AsyncConnection[Any]) -> Schema:
    """Introspect with an async connection (the in-process engine)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        columns = await (await cur.execute(COLUMNS_SQL)).fetchall()
        indexes = await (await cur.execute(INDEXES_SQL)).fetchall()
        foreign_keys = await (await cur.execute(FOREIGN_KEYS_SQL)).fetchall()
        view_bases = await (await cur.execute(VIEW_BASES_SQL)).fetchall()
    return build_schema(columns, indexes, foreign_keys, view_bases)
