"""Trace and span ids, and how an incoming request may choose its own trace id.

The trace id is the request id: 32 lowercase hex characters, always made here.
A caller may pass its own id in ``x-request-id`` (32 hex, or a UUID whose dashes
are dropped) or a W3C ``traceparent``; it is kept for correlation (the gateway span
records it as ``correlation.*`` attributes) but never becomes the trace id, because
trace ids are where spans are stored: a caller choosing one could write its spans
into another request's trace, or hide them there.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO32 = "0" * 32
_ZERO16 = "0" * 16


def new_trace_id() -> str:
    """12 hex digits of epoch milliseconds, then 80 random bits.

    Time-ordered ids keep the span store's primary-key inserts appending instead of landing at random
    places in the index. With a seconds prefix (as AWS X-Ray builds ids) the traces of one second still
    spread over that second's part of the index, and every 50 ms batch dirtied a page per span or so:
    7.3 µs per span stored against 5.0 with milliseconds (bench/PROFILE.md section 8). 80 random bits
    per millisecond keep ids unguessable and collisions out of reach; DynamoDB hashes partition keys,
    so the shared prefix makes no hot key there.
    """
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{os.urandom(10).hex()}"


def new_span_id() -> str:
    return os.urandom(8).hex()


def is_trace_id(value: str) -> bool:
    return bool(_HEX32.match(value)) and value != _ZERO32


@dataclass(frozen=True, slots=True)
class IncomingTrace:
    trace_id: str
    parent_span_id: str | None = None  # never set from a header (see the module docstring)
    source: str = "generated"  # what the caller sent: "x-request-id" | "traceparent" | "generated"
    caller_request_id: str | None = None
    caller_trace_id: str | None = None
    caller_parent_id: str | None = None

    def correlation(self) -> dict[str, str]:
        """Gateway span attributes that tie this trace to the caller's own ids."""
        attrs = {"correlation.request_id": self.caller_request_id, "correlation.trace_id": self.caller_trace_id,
                 "correlation.parent_span_id": self.caller_parent_id}
        return {k: v for k, v in attrs.items() if v}


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


def incoming_trace(headers: Mapping[str, str], *, new_id: Callable[[], str] = new_trace_id) -> IncomingTrace:
    """A fresh trace id for a request, with the caller's valid ids (from lower-cased headers) kept aside."""
    request_id = parse_request_id(headers.get("x-request-id"))
    parent = parse_traceparent(headers.get("traceparent"))
    source = "x-request-id" if request_id else "traceparent" if parent else "generated"
    return IncomingTrace(new_id(), None, source, request_id, parent[0] if parent else None,
                         parent[1] if parent else None)
