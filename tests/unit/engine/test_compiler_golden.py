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


# -- richer forms --------------------------------------------------------------------------------------------

def test_or_and_not_groups_nest_with_parentheses(schema: Schema) -> None:
    text, params = render(schema, {"table": "orders", "operation": "select", "filters": [
        {"column": "status", "op": "eq", "value": "paid"},
        {"or": [{"column": "total", "op": "gt", "value": 100},
                {"and": [{"column": "customer_email", "op": "ilike", "value": "%@x.test"},
                         {"not": {"column": "tags", "op": "contains", "value": ["vip"]}}]}]}]})
    assert text == ('SELECT * FROM "orders" WHERE "status" = %s AND ("total" > %s OR ("customer_email" ILIKE %s '
                    'AND NOT ("tags" @> %s::"pg_catalog"."_text"))) LIMIT %s')
    assert params == ["paid", Decimal("100"), "%@x.test", ["vip"], 101]


@pytest.mark.parametrize(("filter_", "sql", "param"), [
    ({"column": "tags", "op": "contains", "value": ["a", "b"]}, '"tags" @> %s::"pg_catalog"."_text"', ["a", "b"]),
    ({"column": "tags", "op": "contained_by", "value": ["a"]}, '"tags" <@ %s::"pg_catalog"."_text"', ["a"]),
    ({"column": "tags", "op": "overlaps", "value": ["a"]}, '"tags" && %s::"pg_catalog"."_text"', ["a"]),
])
def test_array_operators_bind_one_array_cast_to_the_column_type(schema: Schema, filter_: dict[str, Any], sql: str,
                                                                 param: Any) -> None:
    text, params = render(schema, {"table": "orders", "operation": "select", "filters": [filter_]})
    assert text == f'SELECT * FROM "orders" WHERE {sql} LIMIT %s'
    assert params == [param, 101]


def test_jsonb_containment_and_json_path_comparisons(schema: Schema) -> None:
    text, params = render(schema, {"table": "users", "operation": "select", "filters": [
        {"column": "profile", "op": "contains", "value": {"plan": "pro"}},
        {"column": "profile", "op": "gte", "path": ["limits", "seats"], "value": 5},
        {"column": "profile", "op": "like", "path": ["name"], "value": "A%"},
        {"column": "profile", "op": "not_null", "path": ["tags", 0]}]})
    assert text == ('SELECT * FROM "users" WHERE "profile" @> %s AND ("profile" #> %s::text[]) >= %s '
                    'AND ("profile" #>> %s::text[]) LIKE %s '
                    "AND NOT (COALESCE((\"profile\" #> %s::text[]) = 'null'::jsonb, true)) LIMIT %s")
    assert params[1] == ["limits", "seats"] and params[3] == ["name"] and params[4] == "A%"
    assert params[5] == ["tags", "0"] and params[6] == 101
    assert isinstance(params[0], Jsonb) and params[0].obj == {"plan": "pro"}
    assert isinstance(params[2], Jsonb) and params[2].obj == 5


def test_full_text_search_with_and_without_a_configuration(schema: Schema) -> None:
    text, params = render(schema, {"table": "users", "operation": "select", "filters": [
        {"column": "name", "op": "search", "value": "ada -byron", "config": "english"}]})
    assert text == ('SELECT * FROM "users" WHERE to_tsvector(\'english\'::regconfig, "name") @@ '
                    "websearch_to_tsquery('english'::regconfig, %s) LIMIT %s")
    assert params == ["ada -byron", 101]
    text, _ = render(schema, {"table": "users", "operation": "select",
                              "filters": [{"column": "name", "op": "search", "value": "ada"}]})
    assert text == 'SELECT * FROM "users" WHERE to_tsvector("name") @@ websearch_to_tsquery(%s) LIMIT %s'


def test_a_two_level_embed_is_one_statement_of_lateral_joins(schema: Schema) -> None:
    text, params = render(schema, {
        "table": "users", "operation": "select", "columns": ["id", "name"],
        "filters": [{"column": "active", "op": "eq", "value": True}], "order": [{"column": "id"}], "limit": 10,
        "embed": {"orders": {"table": "orders", "columns": ["id", "total"], "limit": 5,
                             "filters": [{"column": "status", "op": "eq", "value": "paid"}],
                             "order": [{"column": "created_at", "direction": "desc"}],
                             "embed": {"buyer": {"table": "users", "columns": ["email"]}}}}})
    assert text == (
        'SELECT "users"."id", "users"."name", "j1"."v" AS "orders" FROM (SELECT * FROM "users" WHERE "active" = %s '
        'ORDER BY "id" ASC LIMIT %s) AS "users" '
        'LEFT JOIN LATERAL (SELECT coalesce(json_agg("x"), \'[]\'::json) AS "v" FROM (SELECT "e1"."id", "e1"."total", '
        '"j2"."v" AS "buyer" FROM "orders" AS "e1" '
        'LEFT JOIN LATERAL (SELECT row_to_json("x") AS "v" FROM (SELECT "e2"."email" FROM "users" AS "e2" '
        'WHERE "e2"."id" = "e1"."user_id" LIMIT 1) AS "x") AS "j2" ON true '
        'WHERE "e1"."user_id" = "users"."id" AND "e1"."status" = %s ORDER BY "e1"."created_at" DESC LIMIT %s) '
        'AS "x") AS "j1" ON true ORDER BY "users"."id" ASC')
    assert params == [True, 11, "paid", 5]


def test_an_inner_embed_filters_the_parent_rows_with_exists(schema: Schema) -> None:
    text, params = render(schema, {"table": "orders", "operation": "select", "columns": ["id"], "embed": {
        "user": {"table": "users", "columns": ["name"], "inner": True,
                 "filters": [{"column": "active", "op": "eq", "value": True}]}}})
    assert text == (
        'SELECT "orders"."id", "j2"."v" AS "user" FROM (SELECT * FROM "orders" WHERE EXISTS (SELECT 1 FROM "users" '
        'AS "e1" WHERE "e1"."id" = "orders"."user_id" AND "e1"."active" = %s) LIMIT %s) AS "orders" '
        'LEFT JOIN LATERAL (SELECT row_to_json("x") AS "v" FROM (SELECT "e2"."name" FROM "users" AS "e2" '
        'WHERE "e2"."id" = "orders"."user_id" AND "e2"."active" = %s LIMIT 1) AS "x") AS "j2" ON true')
    assert params == [True, 101, True]


def test_group_by_aggregates_having_and_order_by_an_aggregate(schema: Schema) -> None:
    text, params = render(schema, {
        "table": "orders", "operation": "select", "group_by": ["status"],
        "aggregates": [{"fn": "count"}, {"fn": "sum", "column": "total", "as": "revenue"},
                       {"fn": "count", "column": "user_id", "distinct": True, "as": "buyers"}],
        "having": [{"column": "revenue", "op": "gt", "value": 100}],
        "order": [{"column": "revenue", "direction": "desc"}, {"column": "status"}], "limit": 5})
    assert text == ('SELECT "status", count(*) AS "count", sum("total") AS "revenue", count(DISTINCT "user_id") AS '
                    '"buyers" FROM "orders" GROUP BY "status" HAVING sum("total") > %s ORDER BY "revenue" DESC, '
                    '"status" ASC LIMIT %s')
    assert params == [Decimal("100"), 6]


def test_distinct_and_exact_counts(schema: Schema) -> None:
    assert render(schema, {"table": "orders", "operation": "select", "columns": ["status"], "distinct": True})[0] \
        == 'SELECT DISTINCT "status" FROM "orders" LIMIT %s'
    text, params = render(schema, {"table": "orders", "operation": "select", "count": "exact", "limit": 0,
                                   "filters": [{"column": "status", "op": "eq", "value": "paid"}]})
    assert (text, params) == ('SELECT count(*) AS "__flux_total" FROM "orders" WHERE "status" = %s', ["paid"])
    text, params = render(schema, {"table": "orders", "operation": "select", "columns": ["id"], "count": "exact",
                                   "filters": [{"column": "status", "op": "eq", "value": "paid"}], "limit": 20})
    assert text == ('SELECT "c"."__flux_total", "p".* FROM (SELECT count(*) AS "__flux_total" FROM "orders" WHERE '
                    '"status" = %s) AS "c" LEFT JOIN LATERAL (SELECT row_number() OVER () AS "__flux_row", "p0".* '
                    'FROM (SELECT "id" FROM "orders" WHERE "status" = %s LIMIT %s) AS "p0") AS "p" ON true '
                    'ORDER BY "p"."__flux_row"')
    assert params == ["paid", "paid", 21]


def test_increment_and_decrement_update_in_place(schema: Schema) -> None:
    text, params = render(schema, {"table": "users", "operation": "update",
                                   "data": {"age": {"increment": 1}, "score": {"decrement": 0.5}, "name": "x"},
                                   "filters": [{"column": "id", "op": "eq", "value": 7}], "returning": ["age"]})
    assert text == ('UPDATE "users" SET "age" = "age" + %s, "score" = "score" - %s, "name" = %s WHERE "id" = %s '
                    'RETURNING "age"')
    assert params == [1, 0.5, "x", 7]


@pytest.mark.parametrize(("raw", "message"), [
    ({"table": "orders", "operation": "select", "filters": [{"or": [{"column": "nope", "op": "eq", "value": 1}]}]},
     "filters[0].or[0].column: unknown column 'nope' in table 'orders'"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "status", "op": "contains", "value": ["a"]}]},
     "filters[0].op: 'contains' applies to array and jsonb columns; 'status' is text"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "status", "op": "eq", "path": ["a"],
                                                              "value": 1}]},
     "filters[0].path: applies to json and jsonb columns"),
    ({"table": "orders", "operation": "select", "filters": [{"column": "total", "op": "search", "value": "a"}]},
     "filters[0].op: 'search' applies to text and tsvector columns"),
    ({"table": "orders", "operation": "select", "embed": {"u": {"table": "users", "limit": 2}}},
     "embed.u: 'users' is to-one from 'orders' (through user_id); order, limit and offset only apply"),
    ({"table": "orders", "operation": "select", "embed": {"u": {"table": "nope"}}},
     "embed.u.table: unknown table 'nope'"),
    ({"table": "orders", "operation": "select", "embed": {"u": {"table": "users", "via": "other_id"}}},
     "embed.u: no foreign key links 'orders' and 'users' through 'other_id'"),
    ({"table": "orders", "operation": "select", "group_by": ["status"], "aggregates": [{"fn": "count"}],
      "order": [{"column": "total"}]},
     "order[0].column: 'total' is not a group column or an aggregate of this query"),
    ({"table": "orders", "operation": "select", "aggregates": [{"fn": "avg", "column": "status"}]},
     "aggregates[0].fn: 'avg' needs a numeric column; 'status' is text"),
    ({"table": "orders", "operation": "select", "aggregates": [{"fn": "count"}, {"fn": "count"}]},
     "aggregates[1].as: 'count' is already a result column"),
    ({"table": "orders", "operation": "select", "columns": ["status"], "distinct": True,
      "order": [{"column": "id"}]}, "order[0].column: with distinct, the order columns must be selected"),
    ({"table": "orders", "operation": "update", "data": {"status": {"increment": 1}},
      "filters": [{"column": "id", "op": "eq", "value": 1}]}, "data.status.increment: 'increment' needs a numeric"),
    ({"table": "orders", "operation": "update", "data": {"total": {"add": 1}},
      "filters": [{"column": "id", "op": "eq", "value": 1}]}, "data.total: an object sets 'total' only as"),
    ({"table": "orders", "operation": "insert", "data": {"user_id": {"$ref": "0.id"}}},
     "data.user_id: {$ref: ...} only works inside ctx.db.batch"),
])
def test_richer_forms_are_refused_before_any_sql_naming_the_part(schema: Schema, raw: dict[str, Any],
                                                                 message: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        render(schema, raw)
    assert message in caught.value.message, caught.value.message
