"""Database values become JSON that says exactly what the database holds."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.engine.values import row_to_json, rows_to_json, to_json


@pytest.mark.parametrize(("value", "expected"), [
    (Decimal("12.50"), 12.5),
    (Decimal("3.00"), 3),
    (Decimal("0.1"), 0.1),
    (Decimal("0.10000000000000000001"), "0.10000000000000000001"),
    (Decimal("123456789012345678901234567890"), "123456789012345678901234567890"),
    (Decimal("NaN"), "NaN"),
    (2**53 - 1, 2**53 - 1),
    (2**53, "9007199254740992"),
    (-(2**63), "-9223372036854775808"),
    (float("inf"), "Infinity"),
    (float("-inf"), "-Infinity"),
    (float("nan"), "NaN"),
    (1.25, 1.25),
    (True, True),
    (None, None),
    (dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC), "2024-05-01T12:00:00+00:00"),
    (dt.date(2024, 5, 1), "2024-05-01"),
    (dt.time(9, 30), "09:30:00"),
    (dt.timedelta(days=1, seconds=3600), "P1DT3600S"),
    (dt.timedelta(seconds=1.5), "P0DT1.5S"),
    (-dt.timedelta(days=2), "-P2DT0S"),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
    (b"\x00\xffhi", "AP9oaQ=="),
    (memoryview(b"hi"), "aGk="),
    ([Decimal("1.5"), None, [b"a"]], [1.5, None, ["YQ=="]]),
    ({"nested": {"n": 1}}, {"nested": {"n": 1}}),
    (ipaddress.ip_address("10.0.0.1"), "10.0.0.1"),
])
def test_conversion_rules(value: object, expected: object) -> None:
    assert to_json(value) == expected


def test_numbers_that_are_numbers_come_back_as_numbers_exactly() -> None:
    for text in ["0.1", "12.5", "-7", "1e-7", "99999.99"]:
        converted = to_json(Decimal(text))
        assert isinstance(converted, int | float) and Decimal(repr(converted)) == Decimal(text)


def test_a_converted_row_is_json_serialisable() -> None:
    row = {"id": 1, "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "price": Decimal("9.99"), "raw": b"x",
           "ref": uuid.uuid4()}
    text = json.dumps(row_to_json(row))
    assert json.loads(text)["price"] == 9.99


CELLS = [None, "text", True, 7, 2**53, -(2**60), 1.5, float("nan"), float("inf"), Decimal("12.50"),
         Decimal("0.10000000000000000001"), dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), dt.date(2024, 5, 1),
         uuid.UUID(int=5), b"\x00\xff", [1, 2**60], {"a": Decimal("1.5")}]


@given(st.lists(st.lists(st.sampled_from(CELLS), min_size=3, max_size=3), max_size=6))
def test_rows_converted_by_column_equal_rows_converted_cell_by_cell(table: list[list[object]]) -> None:
    rows = [{"a": a, "b": b, "c": c} for a, b, c in table]
    expected = [row_to_json(dict(r)) for r in rows]
    got = rows_to_json([dict(r) for r in rows])
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
