"""A fixed, hand-built schema for the engine's pure tests (no database needed)."""

from __future__ import annotations

import pytest

from functions.engine.schema import Column, ForeignKey, Index, Schema, Table


def col(name: str, type_: str, udt: str, category: str, *, array: str | None = None, nullable: bool = True,
        default: bool = False) -> Column:
    return Column(name=name, type=type_, udt=udt, udt_schema="pg_catalog", category=category,
                  array_udt=array if array is not None else (None if category == "A" else f"_{udt}"),
                  nullable=nullable, has_default=default)


def build_schema() -> Schema:
    users = Table(
        name="users",
        columns={c.name: c for c in [
            col("id", "bigint", "int8", "N", nullable=False, default=True),
            col("email", "character varying(255)", "varchar", "S", nullable=False),
            col("name", "text", "text", "S"),
            col("active", "boolean", "bool", "B"),
            col("age", "smallint", "int2", "N"),
            col("score", "double precision", "float8", "N"),
            col("created_at", "timestamp with time zone", "timestamptz", "D", default=True),
            col("profile", "jsonb", "jsonb", "U"),
            col("avatar", "bytea", "bytea", "U"),
            col("token", "uuid", "uuid", "U"),
        ]},
        primary_key=("id",),
        indexes=(Index("users_pkey", ("id",), unique=True, primary=True),
                 Index("users_email_key", ("email",), unique=True)),
    )
    orders = Table(
        name="orders",
        columns={c.name: c for c in [
            col("id", "integer", "int4", "N", nullable=False, default=True),
            col("user_id", "bigint", "int8", "N", nullable=False),
            col("status", "text", "text", "S", nullable=False),
            col("customer_email", "text", "text", "S"),
            col("total", "numeric(10,2)", "numeric", "N"),
            col("tags", "text[]", "_text", "A"),
            col("created_at", "timestamp with time zone", "timestamptz", "D", default=True),
        ]},
        primary_key=("id",),
        foreign_keys=(ForeignKey("orders_user_id_fkey", ("user_id",), "users", ("id",)),),
        indexes=(Index("orders_pkey", ("id",), unique=True, primary=True),
                 Index("orders_user_id_created_at_idx", ("user_id", "created_at"))),
        row_estimate=50_000,
    )
    migrations = Table(name="flux_migrations", columns={"filename": col("filename", "text", "text", "S")})
    return Schema(tables={"users": users, "orders": orders, "flux_migrations": migrations})


@pytest.fixture(scope="session")
def schema() -> Schema:
    return build_schema()
