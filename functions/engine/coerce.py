"""Bind values for a column: what psycopg should send for a JSON value, or a 400 naming the column.

An ``"42"`` from a query string for an integer column becomes ``42``, a UUID string a
``UUID``, a base64 string for ``bytea`` bytes, anything for ``json``/``jsonb`` a JSON
parameter; numbers are range-checked for their type. Type mistakes are thereby 400s that
name the column rather than database errors after the fact.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg.types.json import Json, Jsonb

from functions.engine.schema import Column
from functions.shared.errors import InvalidQuery

_INT_RANGES = {"int2": 2**15 - 1, "int4": 2**31 - 1, "int8": 2**63 - 1}
_FLOAT_MAX = {"float4": 3.4028234663852886e38, "float8": 1.7976931348623157e308}
_FLOAT_WORDS = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf, "-inf": -math.inf}
_TEXTUAL = frozenset("SDTE")  # string, date/time, interval, enum: given as text, parsed by Postgres
_INTEGER_TEXT = re.compile(r"^[+-]?\d{1,20}$")


def coerce(column: Column, value: Any, where: str) -> Any:
    """The Python value psycopg should bind for ``value`` in ``column``; a mismatch is a 400 naming both."""
    if value is None:
        return None
    if column.is_json:
        return Jsonb(value) if column.udt == "jsonb" else Json(value)
    if isinstance(value, dict):
        raise _mismatch(column, value, where, "an object is only accepted by json/jsonb columns")
    if column.is_array:
        if not isinstance(value, list | tuple):
            raise _mismatch(column, value, where, "expects a list")
        return list(value)
    if isinstance(value, list | tuple):
        raise _mismatch(column, value, where, "a list is only accepted by array columns (or by 'in' filters)")
    if column.udt == "bytea":
        return _bytea(column, value, where)
    if column.udt == "uuid":
        return _uuid(column, value, where)
    if column.category == "N":
        return _number(column, value, where)
    if column.category == "B":
        return _boolean(column, value, where)
    if column.category in _TEXTUAL and not isinstance(value, str):
        raise _mismatch(column, value, where, "expects a string")
    return value


def _number(column: Column, value: Any, where: str) -> Any:
    udt = column.udt
    if isinstance(value, bool):
        raise _mismatch(column, value, where, "expects a number")
    if udt in _INT_RANGES:
        number: Any = value
        if isinstance(value, str) and _INTEGER_TEXT.match(value.strip()):
            number = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if not isinstance(number, int):
            raise _mismatch(column, value, where, "expects an integer")
        if abs(number) > _INT_RANGES[udt] + (1 if number < 0 else 0):
            raise _mismatch(column, value, where, "is out of range")
        return number
    if udt in _FLOAT_MAX:
        if isinstance(value, str):
            word = _FLOAT_WORDS.get(value.strip().lower())
            if word is None:
                try:
                    value = float(value)
                except ValueError:
                    raise _mismatch(column, value, where, "expects a number") from None
            else:
                return word
        if not isinstance(value, int | float):
            raise _mismatch(column, value, where, "expects a number")
        try:
            number = float(value)
        except OverflowError:
            raise _mismatch(column, value, where, "is out of range") from None
        if math.isfinite(number) and abs(number) > _FLOAT_MAX[udt]:
            raise _mismatch(column, value, where, "is out of range")
        return number
    if udt == "numeric":
        try:
            number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except (InvalidOperation, ValueError):
            raise _mismatch(column, value, where, "expects a number") from None
        if number.is_finite() and abs(number.adjusted()) > 131_072:
            raise _mismatch(column, value, where, "is out of range")
        return number
    return value


def _boolean(column: Column, value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _mismatch(column, value, where, "expects true or false")


def _uuid(column: Column, value: Any, where: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise _mismatch(column, value, where, "expects a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _mismatch(column, value, where, "is not a UUID") from None


def _bytea(column: Column, value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise _mismatch(column, value, where, "expects a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _mismatch(column, value, where, "is not valid base64") from None


def _mismatch(column: Column, value: Any, where: str, reason: str) -> InvalidQuery:
    shown = repr(value) if not isinstance(value, dict | list | tuple) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InvalidQuery(f"{where}: {shown} {reason} (column '{column.name}' is {column.type})")
