"""Query-parameter parsing for the observability API: every bad value is a 400, never a 500.

``since`` accepts ISO 8601 (``2024-05-01T12:00:00Z``, a date, an offset) or a
relative age (``90s``, ``15m``, ``2h``, ``1d``, ``1w``), the forms people type
into ``flux logs --since``; both become epoch microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from functions.shared.errors import ValidationFailed
from functions.shared.spans import LOG_LEVELS

_RELATIVE = re.compile(r"^([0-9]{1,9}) *(s|m|h|d|w)$")
_ID = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_FRACTION = re.compile(r"(\.[0-9]{6})[0-9]+")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_MAX_AGE_S = 3_650 * 86_400
_FUNCTION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
STATUSES = ("ok", "error")


def parse_since(value: str, now_us: int) -> int:
    """Epoch microseconds for an ISO 8601 instant or a relative age like ``15m``.

    Ages beyond ten years are clamped (nothing is kept that long) so no value can
    overflow a 64-bit timestamp column. RFC 3339 spellings Python does not read
    (lower-case ``t``/``z``, more than 6 fraction digits, a leap second) are normalised.
    """
    text = value.strip()
    match = _RELATIVE.match(text.lower())
    if match:
        seconds = min(int(match.group(1)) * _UNIT_S[match.group(2)], _MAX_AGE_S)
        return now_us - seconds * 1_000_000
    normalised = _FRACTION.sub(r"\1", text.upper().replace(":60", ":59"))
    try:
        instant = datetime.fromisoformat(normalised)
    except ValueError:
        raise ValidationFailed(f"since: {value!r} is neither ISO 8601 (2024-05-01T12:00:00Z) nor an age like "
                               "15m, 2h, 1d") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    try:
        return int(instant.timestamp()) * 1_000_000 + instant.microsecond
    except (OverflowError, ValueError, OSError):
        raise ValidationFailed(f"since: {value!r} is out of range") from None


def format_since(epoch_us: int) -> str:
    """The ISO 8601 form of an instant, precise to the microsecond (what clients send back as ``since``)."""
    return datetime.fromtimestamp(epoch_us / 1_000_000, tz=UTC).isoformat(timespec="microseconds")


class QueryParams:
    """Typed reads of ``queryStringParameters`` with one error message style."""

    def __init__(self, raw: Mapping[str, str] | None, now_us: int) -> None:
        self.raw = dict(raw or {})
        self.now_us = now_us

    def _text(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        return value

    def limit(self, default: int, maximum: int) -> int:
        value = self._text("limit")
        if value is None:
            return default
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= maximum:
            raise ValidationFailed(f"limit: must be an integer from 1 to {maximum}, got {value!r}")
        return int(value)

    def since_us(self) -> int | None:
        value = self._text("since")
        return None if value is None else parse_since(value, self.now_us)

    def function(self) -> str | None:
        value = self._text("function")
        if value is not None and not _FUNCTION.match(value):
            raise ValidationFailed(f"function: {value[:80]!r} is not a function name")
        return value

    def status(self) -> str | None:
        value = self._text("status")
        if value is not None and value not in STATUSES:
            raise ValidationFailed(f"status: must be one of {', '.join(STATUSES)}, got {value[:80]!r}")
        return value

    def level(self) -> str | None:
        value = self._text("level")
        if value is not None and value.lower() not in LOG_LEVELS:
            raise ValidationFailed(f"level: must be one of {', '.join(LOG_LEVELS)}, got {value[:80]!r}")
        return value.lower() if value else None

    def request_id(self) -> str | None:
        value = self._text("request_id")
        return None if value is None else normalise_id(value, "request_id")


def normalise_id(value: str, what: str) -> str:
    """A trace id as stored (32 lower-case hex) from its hex or UUID spelling; anything else is a 400."""
    candidate = value.strip().lower()
    if not _ID.match(candidate):
        raise ValidationFailed(f"{what}: {value[:80]!r} is not a request id (32 hex characters or a UUID)")
    return candidate.replace("-", "")


def trace_id_of(value: str) -> str:
    return normalise_id(value, "trace id")
