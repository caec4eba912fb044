"""Database values made JSON-safe, losslessly where JSON allows it.

The rules (also in the report and the docs, since user code depends on them):

- ``numeric``/``Decimal``: a JSON number when that number means exactly the same value
  (``12.50`` → ``12.5``, ``3.00`` → ``3``), otherwise a string (``"0.1000000000000000055"``,
  ``"NaN"``, integers beyond 2**53); the compiler accepts both forms back for numeric columns.
- integers: a number up to 2**53 - 1 in magnitude (what JavaScript holds exactly), else a string.
- floats: a number; ``NaN``/``Infinity``/``-Infinity`` as those strings.
- timestamps, dates, times: ISO 8601 text (``2024-05-01T12:00:00+00:00``).
- intervals: ISO 8601 durations (``P1DT3600S``: days and seconds, the form Python keeps).
- ``uuid``: the canonical lowercase string; ``bytea``: base64; ``json``/``jsonb``: the stored
  document exactly as parsed (the integer rule above does not reach inside it).
- arrays: lists with these rules applied to each item; network addresses, ranges and
  anything else: their text form.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_JS_SAFE = 2**53 - 1


@dataclass(frozen=True, slots=True)
class JsonDocument:
    """A json/jsonb value as parsed from the database: passed through untouched, never re-converted."""

    value: Any


def to_json(value: Any) -> Any:
    convert = _BY_TYPE.get(type(value))
    if convert is not None:
        return convert(value)
    return _by_instance(value)


def _by_instance(value: Any) -> Any:
    """Subclasses (and the rare types not in the table) take the slower isinstance path."""
    if value is None or isinstance(value, bool | str):
        return value
    for kind, convert in _BY_TYPE.items():
        if isinstance(value, kind):
            return convert(value)
    return str(value)


def _same(value: Any) -> Any:
    return value


def _int(value: int) -> int | str:
    return value if -_JS_SAFE <= value <= _JS_SAFE else str(value)


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _bytes(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def row_to_json(row: dict[str, Any]) -> dict[str, Any]:
    return {key: to_json(value) for key, value in row.items()}


_PLAIN_TYPES = frozenset({str, bool, type(None)})


def _needs_conversion(rows: list[dict[str, Any]], key: str) -> bool:
    kinds = {type(row[key]) for row in rows}
    if kinds <= _PLAIN_TYPES:
        return False
    if kinds <= _PLAIN_TYPES | {int}:
        return not all(-_JS_SAFE <= row[key] <= _JS_SAFE for row in rows if type(row[key]) is int)
    if kinds <= _PLAIN_TYPES | {float}:
        return not all(math.isfinite(row[key]) for row in rows if type(row[key]) is float)
    return True


def rows_to_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[row_to_json(r) for r in rows]``, converting only the columns that hold a value needing it.

    Rows of one result share their columns. Most columns (text, booleans, small integers) need
    nothing, so each column's value types are collected first (one set comprehension) and only
    the columns holding a timestamp, a decimal, a big integer and the like are converted, in place.
    """
    if not rows:
        return rows
    convert = [key for key in rows[0] if _needs_conversion(rows, key)]
    for row in rows:
        for key in convert:
            row[key] = to_json(row[key])
    return rows


def _decimal(value: Decimal) -> int | float | str:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        as_int = int(value)
        if -_JS_SAFE <= as_int <= _JS_SAFE:
            return as_int
        return str(as_int)
    as_float = float(value)
    if math.isfinite(as_float) and Decimal(repr(as_float)) == value:
        return as_float
    return str(value)


def _duration(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    seconds = value.seconds + value.microseconds / 1_000_000
    secs = f"{seconds:.6f}".rstrip("0").rstrip(".") if value.microseconds else str(value.seconds)
    return f"{sign}P{value.days}DT{secs}S"


_BY_TYPE: dict[type, Any] = {
    str: _same, type(None): _same, bool: _same, int: _int, float: _float,
    Decimal: _decimal,
    JsonDocument: lambda v: v.value,
    dt.datetime: dt.datetime.isoformat, dt.date: dt.date.isoformat, dt.time: dt.time.isoformat,
    dt.timedelta: _duration,
    uuid.UUID: str,
    bytes: _bytes, bytearray: _bytes, memoryview: _bytes,
    list: lambda v: [to_json(x) for x in v], tuple: lambda v: [to_json(x) for x in v],
    dict: lambda v: {str(k): to_json(x) for k, x in v.items()},
}
