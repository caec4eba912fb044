"""Property: every value written through the engine comes back unchanged (by the rules in values.py)."""

from __future__ import annotations

import base64
import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

text = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | text | \
    st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda f: abs(f) < 1e300)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(text, inner, max_size=3), max_leaves=10)
utc_datetimes = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                             timezones=st.just(dt.UTC)).map(lambda d: d.isoformat())

COLUMNS: dict[str, st.SearchStrategy[Any]] = {
    "i2": st.integers(-(2**15), 2**15 - 1),
    "i4": st.integers(-(2**31), 2**31 - 1),
    "i8": st.integers(-(2**63), 2**63 - 1),
    "f8": st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(["NaN", "Infinity", "-Infinity"]),
    "num": st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: abs(d.adjusted()) < 100).map(str) | st.integers(-(10**40), 10**40),
    "txt": text,
    "vc": st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=50),
    "flag": st.booleans(),
    "ts": utc_datetimes,
    "d": st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)).map(lambda d: d.isoformat()),
    "j": json_values,
    "js": json_values,
    "b": st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    "u": st.uuids().map(str),
    "arr": st.lists(text, max_size=4),
    "iarr": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
}


def same(column: str, sent: Any, got: Any) -> bool:
    if sent is None:
        return got is None
    if column == "num":
        return Decimal(str(got)) == Decimal(str(sent))
    if column in ("i8",) and isinstance(got, str):
        return int(got) == sent
    if column == "f8":
        if isinstance(sent, str):
            return got == sent
        return got == sent or (math.isnan(got) and math.isnan(sent))
    if column == "ts":
        return dt.datetime.fromisoformat(got) == dt.datetime.fromisoformat(sent)
    if column in ("j", "js"):
        return _numbers_as_decimals(got) == _numbers_as_decimals(sent)
    return got == sent


def _numbers_as_decimals(value: Any) -> Any:
    """JSON numbers compared as the decimal numbers their text denotes.

    jsonb stores numbers as numeric, so 5.396202910618543e+16 comes back written as
    53962029106185430: the same JSON number (and the same double in JavaScript).
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, list):
        return [_numbers_as_decimals(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers_as_decimals(v) for k, v in value.items()}
    return value


def test_values_round_trip_unchanged(harness) -> None:  # type: ignore[no-untyped-def]
    checked: list[int] = []

    @settings(max_examples=120, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(row=st.fixed_dictionaries({}, optional={c: s | st.none() for c, s in COLUMNS.items()}))
    def run(row: dict[str, Any]) -> None:
        [inserted] = harness.rows({"table": "samples", "operation": "insert", "data": row})
        [selected] = harness.rows({"table": "samples", "operation": "select",
                                   "filters": [{"column": "id", "op": "eq", "value": inserted["id"]}]})
        assert inserted == selected
        for column, sent in row.items():
            assert same(column, sent, selected[column]), (column, sent, selected[column])
            # and the value we got back is accepted again as a filter that finds the row
            if sent is not None and column in ("i2", "i4", "i8", "num", "txt", "vc", "flag", "u", "d"):
                found = harness.rows({"table": "samples", "operation": "select", "columns": ["id"], "filters": [
                    {"column": "id", "op": "eq", "value": inserted["id"]},
                    {"column": column, "op": "eq", "value": selected[column]}]})
                assert found == [{"id": inserted["id"]}], column
        checked.append(len(row))

    run()
    assert len(checked) >= 100 and sum(checked) > 300


def test_every_value_is_found_again_by_the_richer_forms(harness) -> None:  # type: ignore[no-untyped-def]
    """A row written in a batch is read back through a reference, or/not trees, array and JSON-path operators."""
    checked: list[int] = []

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(row=st.fixed_dictionaries({}, optional={c: s for c, s in COLUMNS.items()
                                                   if c in ("i4", "txt", "num", "j", "arr", "iarr", "u", "flag")}))
    def run(row: dict[str, Any]) -> None:
        inserted, found = harness.run(harness.engine.batch([
            {"table": "samples", "operation": "insert", "data": row},
            {"table": "samples", "operation": "select", "count": "exact", "filters": [
                {"or": [{"column": "id", "op": "eq", "value": {"$ref": "0.id"}},
                        {"and": [{"column": "id", "op": "is_null"}, {"column": "id", "op": "not_null"}]}]}]},
        ], harness.call()))
        [written] = inserted["rows"]
        assert found["rows"]["count"] == 1 and found["rows"]["rows"] == [written]
        by_id = {"column": "id", "op": "eq", "value": written["id"]}

        def hits(condition: dict[str, Any]) -> int:
            return harness.rows({"table": "samples", "operation": "select", "count": "exact", "limit": 0,
                                 "filters": [by_id, condition]})["count"]

        for column, sent in row.items():
            if sent is None:
                continue
            if column in ("i4", "txt", "num", "u", "flag"):
                equal = {"column": column, "op": "eq", "value": written[column]}
                assert hits(equal) == 1 and hits({"not": equal}) == 0, column
            elif column in ("arr", "iarr"):
                assert hits({"column": column, "op": "contained_by", "value": written[column]}) == 1, column
                if sent:
                    assert hits({"column": column, "op": "contains", "value": [written[column][0]]}) == 1, column
                    assert hits({"column": column, "op": "overlaps", "value": written[column][-1:]}) == 1, column
            elif column == "j":
                assert hits({"column": "j", "op": "contains", "value": written["j"]}) == 1 \
                    if isinstance(sent, dict | list) else True
                if isinstance(sent, dict):
                    for key, value in sent.items():
                        if value is None:
                            assert hits({"column": "j", "op": "is_null", "path": [key]}) == 1
                        elif not isinstance(value, dict | list):
                            assert hits({"column": "j", "op": "eq", "path": [key], "value": value}) == 1, (key, value)
        checked.append(len(row))

    run()
    assert len(checked) >= 50 and sum(checked) > 100


def test_embeds_counts_and_aggregates_agree_with_the_rows_they_summarise(harness) -> None:  # type: ignore[no-untyped-def]
    """For any orders with any lines: the one-statement embed, the exact count and GROUP BY equal plain queries."""
    [user] = harness.rows({"table": "users", "operation": "insert", "data": {"email": "prop@x.test"},
                           "returning": ["id"]})
    [product] = harness.rows({"table": "products", "operation": "insert", "data": {"name": "p", "price": 1},
                              "returning": ["id"]})
    checked: list[int] = []
    statuses = st.sampled_from(["new", "paid", "shipped"])

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(orders=st.lists(st.tuples(statuses, st.lists(st.integers(1, 9), max_size=4)), min_size=1, max_size=6),
           limit=st.integers(1, 3), status=statuses)
    def run(orders: list[tuple[str, list[int]]], limit: int, status: str) -> None:
        tag = f"prop-{len(checked)}"
        ids = []
        for state, quantities in orders:
            [order] = harness.rows({"table": "orders", "operation": "insert", "returning": ["id"],
                                    "data": {"user_id": user["id"], "status": state, "note": tag}})
            ids.append(order["id"])
            if quantities:
                harness.rows({"table": "order_lines", "operation": "insert", "returning": [], "data": [
                    {"order_id": order["id"], "product_id": product["id"], "quantity": q} for q in quantities]})
        mine = [{"column": "note", "op": "eq", "value": tag}]
        embedded = harness.rows({"table": "orders", "operation": "select", "columns": ["id", "status"],
                                 "filters": mine, "order": [{"column": "id"}], "embed": {
                                     "lines": {"table": "order_lines", "columns": ["quantity"], "limit": limit,
                                               "order": [{"column": "id", "direction": "desc"}]}}})
        for row, (state, quantities) in zip(embedded, orders, strict=True):
            lines = harness.rows({"table": "order_lines", "operation": "select", "columns": ["quantity"],
                                  "filters": [{"column": "order_id", "op": "eq", "value": row["id"]}],
                                  "order": [{"column": "id", "direction": "desc"}], "limit": limit})
            assert row["status"] == state and row["lines"] == lines == [{"quantity": q}
                                                                       for q in quantities[::-1][:limit]]
        page = harness.rows({"table": "orders", "operation": "select", "columns": ["id"], "count": "exact",
                             "filters": [*mine, {"column": "status", "op": "eq", "value": status}], "limit": limit})
        expected = [i for i, (state, _) in zip(ids, orders, strict=True) if state == status]
        assert page["count"] == len(expected) and len(page["rows"]) == min(limit, len(expected))
        assert page["truncated"] == (len(expected) > limit)
        groups = harness.rows({"table": "orders", "operation": "select", "filters": mine, "group_by": ["status"],
                               "aggregates": [{"fn": "count"}], "order": [{"column": "status"}]})
        want = sorted({s for s, _ in orders})
        assert groups == [{"status": s, "count": sum(1 for o, _ in orders if o == s)} for s in want]
        checked.append(len(orders))

    run()
    assert len(checked) >= 30
