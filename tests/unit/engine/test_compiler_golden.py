"""Golden SQL: every operation and every operator compiles to exactly this text and these parameters."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from functions.engine.compiler import compile, max_rows, sql_shape
from functions.engine.model import parse_query
from functions.engine.schema import Schema
from functions.shared.errors import InvalidQuery


def render(schema: Schema, raw: dict[str, Any]) -> tuple[str, list[Any]]:
    statement, params = compile(parse_query(raw), schema)
    return statement.as_string(None), params


def test_select_everything_with_the_default_limit(schema: Schema) -> None:
    text, params = render(schema, {"table": "orders", "operation": "select"})
    assert text == 'SELECT * FROM "orders" LIMIT %s'
    assert params == [101]  # default 100, plus one row to detect truncation


def test_select_columns_order_limit_offset(schema: Schema) -> None:
    text, params = render(schema, {
        "table": "orders", "operation": "select", "columns": ["id", "status"],
        "order": [{"column": "created_at", "direction": "desc"}, {"column": "id"}], "limit": 20, "offset": 40})
    assert text == 'SELECT "id", "status" FROM "orders" ORDER BY "created_at" DESC, "id" ASC LIMIT %s OFFSET %s'
    assert params == [21, 40]


@pytest.mark.parametrize(("op", "value", "sql", "param"), [
    ("eq", "paid", '"status" = %s', "paid"),
    ("neq", "paid", '"status" <> %s', "paid"),
    ("gt", "a", '"status" > %s', "a"),
    ("gte", "a", '"status" >= %s', "a"),
    ("lt", "z", '"status" < %s', "z"),
    ("lte", "z", '"status" <= %s', "z"),
    ("like", "pa%", '"status" LIKE %s', "pa%"),
    ("ilike", "PA%", '"status" ILIKE %s', "PA%"),
])
def test_comparison_operators(schema: Schema, op: str, value: Any, sql: str, param: Any) -> None:
    text, params = render(schema, {"table": "orders", "operation": "select",
                                   "filters": [{"column": "status", "op": op, "value": value}]})
    assert text == f'SELECT * FROM "orders" WHERE {sql} LIMIT %s'
    assert params == [param, 101]


def test_in_and_not_in_bind_one_array_cast_to_the_column_type(schema: Schema) -> None:
    text, params = render(schema, {"table": "orders", "operation": "select", "filters": [
        {"column": "id", "op": "in", "value": [1, 2, "3"]},
        {"column": "status", "op": "not_in", "value": ["void", "refunded"]}]})
    assert text == ('SELECT * FROM "orders" WHERE "id" = ANY(%s::"pg_catalog"."_int4") '
                    'AND "status" <> ALL(%s::"pg_catalog"."_text") LIMIT %s')
    assert params == [[1, 2, 3], ["void", "refunded"], 101]


def test_null_operators_take_no_parameter(schema: Schema) -> None:
    text, params = render(schema, {"table": "orders", "operation": "select", "filters": [
        {"column": "customer_email", "op": "is_null"}, {"column": "total", "op": "not_null", "value": None}]})
    assert text == 'SELECT * FROM "orders" WHERE "customer_email" IS NULL AND "total" IS NOT NULL LIMIT %s'
    assert params == [101]


def test_insert_one_row_returns_every_column_by_default(schema: Schema) -> None:
    text, params = render(schema, {"table": "orders", "operation": "insert",
                                   "data": {"user_id": 7, "status": "new", "total": 12.5}})
    assert text == 'INSERT INTO "orders" ("user_id", "status", "total") VALUES (%s, %s, %s) RETURNING *'
    assert params == [7, "new", Decimal("12.5")]


def test_bulk_insert_fills_missing_cells_with_default(schema: Schema) -> None:
    text, params = render(schema, {"table": "orders", "operation": "insert", "returning": ["id"], "data": [
        {"user_id": 1, "status": "new"}, {"user_id": 2, "total": "3.10"}]})
    assert text == ('INSERT INTO "orders" ("user_id", "status", "total") VALUES (%s, %s, DEFAULT), '
                    '(%s, DEFAULT, %s) RETURNING "id"')
    assert params == [1, "new", 2, Decimal("3.10")]
    assert sql_shape(text) == 'INSERT INTO "orders" ("user_id", "status", "total") VALUES (?, ?, DEFAULT), ... ' \
                              'RETURNING "id"'


def test_insert_of_an_empty_object_uses_default_values(schema: Schema) -> None:
    text, params = render(schema, {"table": "users", "operation": "insert", "data": {}, "returning": []})
    assert text == 'INSERT INTO "users" DEFAULT VALUES'
    assert params == []


def test_upsert_defaults_to_the_primary_key_and_updates_the_other_columns(schema: Schema) -> None:
    text, params = render(schema, {"table": "users", "operation": "upsert",
                                   "data": {"id": 1, "email": "a@example.com", "name": "A"}})
    assert text == ('INSERT INTO "users" ("id", "email", "name") VALUES (%s, %s, %s) '
                    'ON CONFLICT ("id") DO UPDATE SET "email" = EXCLUDED."email", "name" = EXCLUDED."name" '
                    'RETURNING *')
    assert params == [1, "a@example.com", "A"]


def test_upsert_on_a_unique_column_with_nothing_else_does_nothing(schema: Schema) -> None:
    text, _ = render(schema, {"table": "users", "operation": "upsert", "data": {"email": "a@example.com"},
                              "on_conflict": ["email"]})
    assert text == 'INSERT INTO "users" ("email") VALUES (%s) ON CONFLICT ("email") DO NOTHING RETURNING *'


def test_upsert_target_must_be_a_unique_key(schema: Schema) -> None:
    with pytest.raises(InvalidQuery, match=r"on_conflict: \(name\) is not the primary key or a unique index"):
        render(schema, {"table": "users", "operation": "upsert", "data": {"name": "x"}, "on_conflict": ["name"]})


def test_update(schema: Schema) -> None:
    text, params = render(schema, {"table": "orders", "operation": "update", "data": {"status": "paid"},
                                   "filters": [{"column": "id", "op": "eq", "value": "42"}], "returning": ["id"]})
    assert text == 'UPDATE "orders" SET "status" = %s WHERE "id" = %s RETURNING "id"'
    assert params == ["paid", 42]


def test_delete(schema: Schema) -> None:
    text, params = render(schema, {"table": "orders", "operation": "delete",
                                   "filters": [{"column": "status", "op": "eq", "value": "void"}]})
    assert text == 'DELETE FROM "orders" WHERE "status" = %s RETURNING *'
    assert params == ["void"]


def test_array_json_bytea_and_uuid_values(schema: Schema) -> None:
    token = str(uuid.uuid4())
    text, params = render(schema, {"table": "users", "operation": "insert", "returning": [], "data": {
        "profile": {"theme": "dark"}, "avatar": "aGk=", "token": token}})
    assert text == 'INSERT INTO "users" ("profile", "avatar", "token") VALUES (%s, %s, %s)'
    assert isinstance(params[0], Jsonb) and params[0].obj == {"theme": "dark"}
    assert params[1:] == [b"hi", uuid.UUID(token)]
    text, params = render(schema, {"table": "orders", "operation": "update", "data": {"tags": ["a", "b"]},
                                   "filters": [{"column": "id", "op": "eq", "value": 1}], "returning": []})
    assert text == 'UPDATE "orders" SET "tags" = %s::"pg_catalog"."_text" WHERE "id" = %s'
    assert params == [["a", "b"], 1]


def test_sql_shape_has_placeholders_not_values(schema: Schema) -> None:
    text, _ = render(schema, {"table": "orders", "operation": "select",
                              "filters": [{"column": "status", "op": "in", "value": ["a", "b", "c"]}]})
    assert sql_shape(text) == 'SELECT * FROM "orders" WHERE "status" = ANY(?::"pg_catalog"."_text") LIMIT ?'


def test_max_rows_is_the_limit_for_selects_and_the_cap_for_writes(schema: Schema) -> None:
    assert max_rows(parse_query({"table": "orders", "operation": "select", "limit": 5})) == 5
    assert max_rows(parse_query({"table": "orders", "operation": "delete",
                                 "filters": [{"column": "id", "op": "eq", "value": 1}]})) == 1000


@pytest.mark.parametrize(("raw", "message"), [
    ({"table": "pg_authid", "operation": "select"}, "table: unknown table 'pg_authid'"),
    ({"table": "flux_migrations", "operation": "select"}, "table: unknown table 'flux_migrations'"),
    ({"table": "order", "operation": "select"}, "unknown table 'order' (did you mean 'orders'?)"),
    ({"table": "orders", "operation": "select", "columns": ["id", "totl"]},
     "columns[1]: unknown column 'totl' in table 'orders' (did you mean 'total'?)"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "nope", "op": "eq", "value": 1}]},
     "filters[0].column: unknown column 'nope' in table 'orders'"),
    ({"table": "orders", "operation": "select", "order": [{"column": "nope"}]}, "order[0].column: unknown column"),
    ({"table": "orders", "operation": "insert", "data": {"nope": 1}}, "data.nope: unknown column 'nope'"),
    ({"table": "orders", "operation": "insert", "data": {"id": 1}, "returning": ["nope"]}, "returning[0]: unknown"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "id", "op": "eq", "value": "abc"}]},
     "filters[0].value: 'abc' expects an integer (column 'id' is integer)"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "id", "op": "eq", "value": 2**31}]},
     "filters[0].value: 2147483648 is out of range (column 'id' is integer)"),
    ({"table": "users", "operation": "select", "filters": [{"column": "age", "op": "gt", "value": 40000}]},
     "is out of range (column 'age' is smallint)"),
    ({"table": "users", "operation": "select", "filters": [{"column": "id", "op": "eq", "value": 2**63}]},
     "is out of range (column 'id' is bigint)"),
    ({"table": "users", "operation": "select", "filters": [{"column": "score", "op": "lt", "value": 10**400}]},
     "is out of range (column 'score' is double precision)"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "status", "op": "eq", "value": 5}]},
     "filters[0].value: 5 expects a string (column 'status' is text)"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "id", "op": "like", "value": "1%"}]},
     "filters[0].op: 'like' applies to text columns; 'id' is integer"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "tags", "op": "in", "value": []}]},
     "'in' does not apply to array column 'tags'"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "id", "op": "in", "value": [1, None]}]},
     "an 'in' list cannot hold null"),
    ({"table": "users", "operation": "update", "data": {"active": "maybe"},
      "filters": [{"column": "id", "op": "eq", "value": 1}]}, "data.active: 'maybe' expects true or false"),
    ({"table": "users", "operation": "insert", "data": {"token": "not-a-uuid"}}, "data.token: 'not-a-uuid' is not a UUID"),
    ({"table": "users", "operation": "insert", "data": {"avatar": "***"}}, "data.avatar: '***' is not valid base64"),
    ({"table": "users", "operation": "insert", "data": {"name": {"a": 1}}}, "an object is only accepted by json"),
    ({"table": "orders", "operation": "insert", "data": {"tags": "a"}}, "data.tags: 'a' expects a list"),
    ({"table": "orders", "operation": "insert", "data": {"total": "lots"}}, "data.total: 'lots' expects a number"),
    ({"table": "orders", "operation": "insert", "data": [{}, {}]}, "data: rows need at least one column"),
])
def test_schema_errors_name_the_offending_part(schema: Schema, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        render(schema, raw)
    assert message in caught.value.message
    assert caught.value.status == 400 and caught.value.code == "invalid_query"


def test_query_string_values_are_converted_for_their_columns(schema: Schema) -> None:
    _, params = render(schema, {"table": "users", "operation": "select", "filters": [
        {"column": "id", "op": "eq", "value": "12"}, {"column": "active", "op": "eq", "value": "true"},
        {"column": "score", "op": "gte", "value": "1.5"}, {"column": "created_at", "op": "gt", "value": "2024-01-01"}]})
    assert params == [12, True, 1.5, "2024-01-01", 101]
