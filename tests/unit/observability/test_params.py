"""Query parameters of the observability API: `since`, limits, ids."""

from __future__ import annotations

import pytest

from functions.observability.params import QueryParams, format_since, normalise_id, parse_since
from functions.shared.errors import ValidationFailed

NOW = 1_750_000_000_000_000


@pytest.mark.parametrize(("value", "expected"), [
    ("90s", NOW - 90_000_000), ("15m", NOW - 900_000_000), ("2h", NOW - 7_200_000_000),
    ("1d", NOW - 86_400_000_000), ("1w", NOW - 604_800_000_000), ("15M", NOW - 900_000_000),
    ("5 m", NOW - 300_000_000),
    ("2024-05-01T12:00:00Z", 1_714_564_800_000_000), ("2024-05-01T14:00:00+02:00", 1_714_564_800_000_000),
    ("2024-05-01", 1_714_521_600_000_000), ("2024-05-01T12:00:00.25", 1_714_564_800_250_000),
    ("2024-05-01t12:00:00.123456789z", 1_714_564_800_123_456),
])
def test_since_forms(value: str, expected: int) -> None:
    assert parse_since(value, NOW) == expected


def test_huge_ages_are_clamped_to_ten_years() -> None:
    assert parse_since("999999999w", NOW) == NOW - 3_650 * 86_400 * 1_000_000


@pytest.mark.parametrize("value", ["yesterday", "15", "m", "-5m", "2024-13-01", "15 minutes", "", "1.5h"])
def test_bad_since(value: str) -> None:
    with pytest.raises(ValidationFailed, match="since"):
        parse_since(value, NOW)


def test_format_since_round_trips() -> None:
    assert parse_since(format_since(NOW + 7), 0) == NOW + 7


def test_limits_and_enums() -> None:
    params = QueryParams({"limit": "20", "status": "error", "level": "WARN", "function": "create_order"}, NOW)
    assert params.limit(50, 100) == 20 and params.status() == "error" and params.level() == "warn"
    assert params.function() == "create_order"
    empty = QueryParams(None, NOW)
    assert empty.limit(50, 100) == 50 and empty.status() is None and empty.since_us() is None
    for raw in ({"limit": "0"}, {"limit": "101"}, {"limit": "1e3"}, {"limit": "-1"}, {"limit": " 5"}):
        with pytest.raises(ValidationFailed, match="limit"):
            QueryParams(raw, NOW).limit(50, 100)


def test_ids() -> None:
    assert normalise_id("4BF92F3577B34DA6A3CE929D0E0E4736", "id") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert normalise_id("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "id") == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in ("4bf92f", "g" * 32, "4bf92f3577b34da6a3ce929d0e0e4736 x"):
        with pytest.raises(ValidationFailed):
            normalise_id(bad, "id")
