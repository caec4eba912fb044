"""The query model refuses anything that is not a well-formed structured query, naming the bad part."""

from __future__ import annotations

from typing import Any

import pytest

from functions.engine.model import (
    DEFAULT_LIMIT,
    InsertQuery,
    SelectQuery,
    UpsertQuery,
    parse_batch,
    parse_query,
)
from functions.shared.errors import InvalidQuery


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("statement in a name", {"table": "users; drop table x", "operation": "select"},
     "table: 'users; drop table x' is not a plain identifier"),
    ("quoted name", {"table": '"users"', "operation": "select"}, "table: '\"users\"' is not a plain identifier"),
    ("schema-qualified", {"table": "pg_catalog.pg_authid", "operation": "select"},
     "table: 'pg_catalog.pg_authid' is not a plain identifier"),
    ("64-byte name", {"table": "a" * 64, "operation": "select"}, "is 64 bytes long; identifiers are at most 63"),
    ("NUL in a name", {"table": "users\x00", "operation": "select"}, "table: 'users\\x00' contains a NUL byte"),
    ("NUL in a value", {"table": "users", "operation": "select",
                        "filters": [{"column": "name", "op": "eq", "value": "a\x00b"}]},
     "filters[0].value: 'a\\x00b' contains a NUL byte"),
    ("NUL inside JSON data", {"table": "users", "operation": "insert", "data": {"profile": {"k": ["ok", "\x00"]}}},
     "data.profile: contains a NUL byte"),
    ("huge in list", {"table": "users", "operation": "select",
                      "filters": [{"column": "id", "op": "in", "value": list(range(100_000))}]},
     "filters[0].value: has 100000 items; an 'in' list holds at most 1000"),
    ("limit 10**9", {"table": "users", "operation": "select", "limit": 10**9},
     "limit: 1000000000 is over the maximum of 1000 rows"),
    ("negative limit", {"table": "users", "operation": "select", "limit": -1}, "limit: input should be greater"),
    ("huge offset", {"table": "users", "operation": "select", "offset": 10**12}, "offset: input should be less"),
    ("unknown operator", {"table": "users", "operation": "select",
                          "filters": [{"column": "id", "op": "regex", "value": 1}]},
     "filters[0].op: unknown operator 'regex' (expected one of eq, neq"),
    ("SQL as operator", {"table": "users", "operation": "select",
                         "filters": [{"column": "id", "op": "= 1 OR 1=1 --", "value": 1}]}, "unknown operator"),
    ("unknown key", {"table": "users", "operation": "select", "where": "1=1"},
     "unknown key 'where' for operation 'select'"),
    ("key of another operation", {"table": "users", "operation": "select", "data": {"a": 1}},
     "unknown key 'data' for operation 'select'"),
    ("unknown filter key", {"table": "users", "operation": "select",
                            "filters": [{"column": "id", "op": "eq", "value": 1, "raw": "x"}]},
     "unknown key 'raw' in filters[0]"),
    ("unknown operation", {"table": "users", "operation": "truncate"}, "operation: must be one of select, insert"),
    ("missing operation", {"table": "users"}, "operation: must be one of"),
    ("missing table", {"operation": "select"}, "table: is required"),
    ("non-finite number", {"table": "users", "operation": "select",
                           "filters": [{"column": "score", "op": "gt", "value": float("inf")}]},
     "is not a finite number"),
    ("bad column in data", {"table": "users", "operation": "insert", "data": {"name) VALUES (1); --": 1}},
     "data: key 'name) VALUES (1); --' is not a plain identifier"),
    ("bad direction", {"table": "users", "operation": "select", "order": [{"column": "id", "direction": "sideways"}]},
     "order[0].direction: 'sideways' is not allowed"),
    ("string limit", {"table": "users", "operation": "select", "limit": "10"}, "limit: input should be a valid integer"),
    ("boolean limit", {"table": "users", "operation": "select", "limit": True}, "limit: input should be a valid integer"),
    ("update without filters", {"table": "users", "operation": "update", "data": {"name": "x"}},
     "filters: update without filters is refused"),
    ("delete without filters", {"table": "users", "operation": "delete", "filters": []},
     "filters: delete without filters is refused"),
    ("eq null", {"table": "users", "operation": "select", "filters": [{"column": "name", "op": "eq", "value": None}]},
     "'eq' needs a non-null value (use is_null / not_null"),
    ("in needs a list", {"table": "users", "operation": "select",
                         "filters": [{"column": "id", "op": "in", "value": 3}]}, "'in' needs a list of values"),
    ("like needs a string", {"table": "users", "operation": "select",
                             "filters": [{"column": "name", "op": "like", "value": 3}]}, "'like' needs a string"),
    ("is_null with a value", {"table": "users", "operation": "select",
                              "filters": [{"column": "name", "op": "is_null", "value": "x"}]}, "'is_null' takes no value"),
    ("cache on a write", {"table": "users", "operation": "insert", "data": {}, "cache": {"ttl_s": 5}},
     "unknown key 'cache' for operation 'insert'"),
    ("zero ttl", {"table": "users", "operation": "select", "cache": {"ttl_s": 0}}, "cache.ttl_s: input should be greater"),
    ("returning a string", {"table": "users", "operation": "insert", "data": {}, "returning": "id"},
     "returning: 'id' must be \"*\" or a list of column names"),
    ("empty bulk insert", {"table": "users", "operation": "insert", "data": []}, "data: value should have at least 1"),
    ("too many bulk rows", {"table": "users", "operation": "insert", "data": [{"name": "x"}] * 1001},
     "data: value should have at most 1000 items"),
    ("deep JSON", {"table": "users", "operation": "insert", "data": {"profile": _deep(40)}}, "nested deeper than 32"),
    ("not an object", ["select * from users"], "query: must be an object"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("case", "raw", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_and_malformed_queries_are_400_naming_the_part(case: str, raw: Any, message: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse_query(raw)
    assert message in caught.value.message, caught.value.message
    assert (caught.value.status, caught.value.code) == (400, "invalid_query")


def test_a_select_gets_the_default_limit_and_keeps_an_explicit_one() -> None:
    query = parse_query({"table": "users", "operation": "select"})
    assert isinstance(query, SelectQuery) and query.limit == DEFAULT_LIMIT
    assert parse_query({"table": "users", "operation": "select", "limit": 0}).limit == 0  # type: ignore[union-attr]
    assert parse_query({"table": "users", "operation": "select"}, default_limit=7).limit == 7  # type: ignore[union-attr]


def test_operation_operator_and_direction_are_case_insensitive() -> None:
    query = parse_query({"table": "users", "operation": "SELECT", "filters": [{"column": "id", "op": "IN",
                                                                                "value": [1]}],
                         "order": [{"column": "id", "direction": "DESC"}]})
    assert isinstance(query, SelectQuery)
    assert query.filters[0].op == "in" and query.filters[0].value == (1,) and query.order[0].direction == "desc"


def test_models_are_frozen() -> None:
    query = parse_query({"table": "users", "operation": "select"})
    with pytest.raises(ValueError, match="frozen"):
        query.table = "orders"  # type: ignore[misc]


def test_insert_data_is_always_a_tuple_of_rows_and_upsert_is_an_insert() -> None:
    one = parse_query({"table": "users", "operation": "insert", "data": {"name": "a"}})
    many = parse_query({"table": "users", "operation": "insert", "data": [{"name": "a"}, {"name": "b"}]})
    assert isinstance(one, InsertQuery) and one.data == ({"name": "a"},)
    assert isinstance(many, InsertQuery) and len(many.data) == 2
    upsert = parse_query({"table": "users", "operation": "upsert", "data": {"id": 1}, "on_conflict": ["id"]})
    assert isinstance(upsert, UpsertQuery) and isinstance(upsert, InsertQuery) and upsert.on_conflict == ("id",)


def test_returning_star_is_none_and_empty_means_no_clause() -> None:
    assert parse_query({"table": "t", "operation": "insert", "data": {}}).returning is None  # type: ignore[union-attr]
    assert parse_query({"table": "t", "operation": "insert", "data": {}, "returning": "*"}
                       ).returning is None  # type: ignore[union-attr]
    assert parse_query({"table": "t", "operation": "insert", "data": {}, "returning": []}
                       ).returning == ()  # type: ignore[union-attr]


def test_a_63_byte_identifier_is_accepted() -> None:
    assert parse_query({"table": "t" * 63, "operation": "select"}).table == "t" * 63


def test_batch_messages_say_which_query_failed() -> None:
    with pytest.raises(InvalidQuery, match=r"^batch\[1\]\.table: "):
        parse_batch([{"table": "a", "operation": "select"}, {"table": "a b", "operation": "select"}])
    with pytest.raises(InvalidQuery, match="batch: is empty"):
        parse_batch([])
    with pytest.raises(InvalidQuery, match="batch: must be a list"):
        parse_batch({"table": "a"})
    with pytest.raises(InvalidQuery, match="a batch holds at most 100"):
        parse_batch([{"table": "a", "operation": "select"}] * 101)
