"""Every operation and operator through DataEngine against the embedded Postgres."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded(harness):  # type: ignore[no-untyped-def]
    users = harness.rows({"table": "users", "operation": "insert", "data": [
        {"email": "ada@example.com", "name": "Ada", "age": 36},
        {"email": "bob@example.com", "name": "Bob", "age": 25, "active": False},
        {"email": "cy@example.com", "age": 51},
    ]})
    ids = {u["name"] or "Cy": u["id"] for u in users}
    harness.rows({"table": "orders", "operation": "insert", "returning": [], "data": [
        {"user_id": ids["Ada"], "status": "paid", "total": 10.5},
        {"user_id": ids["Ada"], "status": "new", "total": "99.99"},
        {"user_id": ids["Bob"], "status": "paid", "total": 3},
        {"user_id": ids["Cy"], "status": "void", "total": 0, "note": "test"},
    ]})
    return ids


def test_insert_returns_the_new_rows_with_defaults(harness, seeded) -> None:  # type: ignore[no-untyped-def]
    [ada] = harness.rows({"table": "users", "operation": "select", "filters": [
        {"column": "email", "op": "eq", "value": "ada@example.com"}]})
    assert ada["id"] == seeded["Ada"] and ada["active"] is True and ada["age"] == 36
    assert ada["created_at"].endswith("+00:00")  # ISO 8601 with offset


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("eq", "paid", [10.5, 3]),
    ("neq", "paid", [99.99, 0]),
    ("in", ["new", "void"], [99.99, 0]),
    ("not_in", ["new", "void"], [10.5, 3]),
    ("like", "pa%", [10.5, 3]),
    ("ilike", "PA%", [10.5, 3]),
])
def test_text_operators(harness, seeded, op, value, expected) -> None:  # type: ignore[no-untyped-def]
    rows = harness.rows({"table": "orders", "operation": "select", "columns": ["total"], "order": [{"column": "id"}],
                         "filters": [{"column": "status", "op": op, "value": value}]})
    assert [r["total"] for r in rows] == expected


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("gt", 3, [10.5, 99.99]),
    ("gte", 3, [10.5, 99.99, 3]),
    ("lt", "10.5", [3, 0]),
    ("lte", 10.5, [10.5, 3, 0]),
])
def test_range_operators(harness, seeded, op, value, expected) -> None:  # type: ignore[no-untyped-def]
    rows = harness.rows({"table": "orders", "operation": "select", "columns": ["total"], "order": [{"column": "id"}],
                         "filters": [{"column": "total", "op": op, "value": value}]})
    assert [r["total"] for r in rows] == expected


def test_null_operators(harness, seeded) -> None:  # type: ignore[no-untyped-def]
    noted = harness.rows({"table": "orders", "operation": "select", "filters": [{"column": "note", "op": "not_null"}]})
    assert [r["note"] for r in noted] == ["test"]
    unnamed = harness.rows({"table": "users", "operation": "select", "filters": [{"column": "name", "op": "is_null"}]})
    assert [u["email"] for u in unnamed] == ["cy@example.com"]


def test_order_limit_offset_and_truncation(harness, seeded) -> None:  # type: ignore[no-untyped-def]
    page = harness.query({"table": "orders", "operation": "select", "columns": ["total"],
                          "order": [{"column": "total", "direction": "desc"}], "limit": 2, "offset": 1})
    assert page == {"rows": [{"total": 10.5}, {"total": 3}], "truncated": True}
    last = harness.query({"table": "orders", "operation": "select", "columns": ["total"],
                          "order": [{"column": "total", "direction": "desc"}], "limit": 2, "offset": 2})
    assert last == {"rows": [{"total": 3}, {"total": 0}], "truncated": False}


def test_update_with_returning_and_string_ids_from_a_query_string(harness, seeded) -> None:  # type: ignore[no-untyped-def]
    rows = harness.rows({"table": "users", "operation": "update", "data": {"name": "Cyrus"},
                         "filters": [{"column": "id", "op": "eq", "value": str(seeded["Cy"])}],
                         "returning": ["id", "name"]})
    assert rows == [{"id": seeded["Cy"], "name": "Cyrus"}]


def test_upsert_inserts_then_updates(harness, seeded) -> None:  # type: ignore[no-untyped-def]
    first = harness.rows({"table": "users", "operation": "upsert", "on_conflict": ["email"],
                          "data": {"email": "dee@example.com", "name": "Dee"}})
    second = harness.rows({"table": "users", "operation": "upsert", "on_conflict": ["email"],
                           "data": {"email": "dee@example.com", "name": "Deirdre"}})
    assert first[0]["id"] == second[0]["id"] and second[0]["name"] == "Deirdre"
    nothing = harness.rows({"table": "users", "operation": "upsert", "on_conflict": ["email"],
                            "data": {"email": "dee@example.com"}})
    assert nothing == []  # DO NOTHING on conflict returns no row


def test_delete_returns_what_it_removed(harness, seeded) -> None:  # type: ignore[no-untyped-def]
    """Inserts its own row: under pytest-xdist the upsert test may run on the other worker, or after this one."""
    harness.rows({"table": "users", "operation": "insert", "returning": [], "data": {"email": "eve@example.com"}})
    removed = harness.rows({"table": "users", "operation": "delete", "returning": ["email"],
                            "filters": [{"column": "email", "op": "eq", "value": "eve@example.com"}]})
    assert removed == [{"email": "eve@example.com"}]
    again = harness.query({"table": "users", "operation": "delete",
                           "filters": [{"column": "email", "op": "eq", "value": "eve@example.com"}]})
    assert again == {"rows": [], "truncated": False}


def test_spans_carry_rows_shape_and_cache_status(harness, seeded) -> None:  # type: ignore[no-untyped-def]
    harness.sink.spans.clear()
    cached = {"table": "users", "operation": "select", "columns": ["email"], "cache": {"ttl_s": 30},
              "filters": [{"column": "active", "op": "eq", "value": True}], "order": [{"column": "email"}]}
    first = harness.rows(cached)
    assert harness.rows(cached) == first
    harness.rows({"table": "users", "operation": "update", "data": {"active": True},
                  "filters": [{"column": "email", "op": "eq", "value": "bob@example.com"}]})
    after_write = harness.rows(cached)
    assert len(after_write) == len(first) + 1   # the write through the engine invalidated the cached rows
    spans = harness.sink.spans
    assert [s.attrs["cache"] for s in spans] == ["MISS", "HIT", "BYPASS", "MISS"]
    assert spans[0].attrs["sql_shape"] == ('SELECT "email" FROM "users" WHERE "active" = ? '
                                           'ORDER BY "email" ASC LIMIT ?')
    assert spans[0].attrs["filter_columns"] == ["active"] and spans[0].attrs["order_columns"] == ["email"]
    assert spans[2].attrs["rows"] == 1 and spans[2].name == "update users"
    assert all(s.trace_id == "e" * 32 and s.parent_span_id == "f" * 16 and s.duration_us > 0 for s in spans)


def test_batch_commits_all_queries_together(harness, seeded) -> None:  # type: ignore[no-untyped-def]
    results = harness.run(harness.engine.batch([
        {"table": "users", "operation": "insert", "data": {"email": "eve@example.com"}},
        {"table": "users", "operation": "select", "columns": ["email"],
         "filters": [{"column": "email", "op": "eq", "value": "eve@example.com"}]},
    ], harness.call()))
    assert results[1] == {"rows": [{"email": "eve@example.com"}], "truncated": False}
    assert harness.rows({"table": "users", "operation": "select", "columns": ["email"],
                         "filters": [{"column": "email", "op": "eq", "value": "eve@example.com"}]})
