"""build_schema (pure): views get their base tables through views of views; indexes keep DESC and definitions."""

from __future__ import annotations

from typing import Any

from functions.engine.introspect import build_schema
from functions.engine.schema import Index, index_definition


def column(table: str, name: str, relkind: str = "r") -> dict[str, Any]:
    return {"table_name": table, "relkind": relkind, "row_estimate": 0, "column_name": name, "data_type": "integer",
            "udt": "int4", "udt_schema": "pg_catalog", "category": "N", "array_udt": "_int4", "nullable": True,
            "has_default": False}


def test_a_view_of_a_view_reads_every_table_beneath_it() -> None:
    columns = [column("orders", "id"), column("users", "id"), column("paid", "id", "v"),
               column("paid_by_user", "id", "v"), column("snapshot", "id", "m")]
    bases = [{"view_name": "paid", "base_name": "orders"},
             {"view_name": "paid_by_user", "base_name": "paid"}, {"view_name": "paid_by_user", "base_name": "users"},
             {"view_name": "snapshot", "base_name": "paid_by_user"}]
    schema = build_schema(columns, [], [], bases)
    assert schema.tables["paid"].base_tables == ("orders",)
    assert schema.tables["paid_by_user"].base_tables == ("orders", "paid", "users")
    assert schema.tables["snapshot"].base_tables == ("orders", "paid", "paid_by_user", "users")
    assert schema.tables["snapshot"].kind == "materialized_view" and schema.tables["orders"].base_tables == ()
    assert schema.reads(["snapshot"]) == {"snapshot", "paid_by_user", "paid", "orders", "users"}


def test_indexes_keep_their_direction_and_definition() -> None:
    indexes = [{"table_name": "orders", "index_name": "orders_recent", "is_unique": False, "is_primary": False,
                "is_partial": False, "method": "btree", "columns": ["user_id", "id"], "descending": [False, True],
                "definition": "CREATE INDEX orders_recent ON public.orders USING btree (user_id, id DESC)"}]
    schema = build_schema([column("orders", "id"), column("orders", "user_id")], indexes, [])
    [index] = schema.tables["orders"].indexes
    assert index.descending == (False, True) and index.definition.endswith("(user_id, id DESC)")
    [graph] = [ix for t in schema.to_graph()["tables"] for ix in t["indexes"]]
    assert graph["descending"] == [False, True] and graph["definition"] == index.definition
    # without a catalog definition (hand-built schemas), the same statement is written from the parts
    assert index_definition("orders", Index("i", ("user_id", "id"), descending=(False, True))) == \
        "CREATE INDEX i ON public.orders USING btree (user_id, id DESC)"
