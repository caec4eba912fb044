"""Trace and span ids and the choice of a request's trace id (DESIGN §4 "Trace id")."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.shared import ids
from functions.shared.ids import (
    IncomingTrace,
    incoming_trace,
    is_trace_id,
    new_span_id,
    new_trace_id,
    parse_request_id,
    parse_traceparent,
)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_new_ids_have_the_right_shape_and_are_unique() -> None:
    traces = {new_trace_id() for _ in range(200)}
    spans = {new_span_id() for _ in range(200)}
    assert len(traces) == 200 and len(spans) == 200
    assert all(HEX32.match(t) for t in traces)
    assert all(HEX16.match(s) for s in spans)
    assert all(is_trace_id(t) for t in traces)


def test_trace_ids_start_with_the_epoch_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids made a millisecond apart sort in time order, so the span store's index only appends."""
    clock = iter([1_764_000_000.0004, 1_764_000_000.0016])
    monkeypatch.setattr(ids.time, "time", lambda: next(clock))
    first, second = new_trace_id(), new_trace_id()
    assert first[:12] == f"{1_764_000_000_000:012x}" and second[:12] == f"{1_764_000_000_001:012x}"
    assert first < second


@pytest.mark.parametrize(("value", "expected"), [
    (TRACE, True),
    ("0" * 32, False),
    (TRACE.upper(), False),  # is_trace_id checks the canonical form only
    (TRACE[:-1], False),
    (TRACE + "0", False),
    ("g" * 32, False),
    ("", False),
])
def test_is_trace_id(value: str, expected: bool) -> None:
    assert is_trace_id(value) is expected


@pytest.mark.parametrize(("header", "expected"), [
    (TRACE, TRACE),
    (TRACE.upper(), TRACE),
    (f"  {TRACE}\t", TRACE),
    ("123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000"),
    ("123E4567-E89B-12D3-A456-426614174000", "123e4567e89b12d3a456426614174000"),
])
def test_parse_request_id_accepts_hex32_and_uuid(header: str, expected: str) -> None:
    assert parse_request_id(header) == expected


@pytest.mark.parametrize("header", [
    None, "", "0" * 32, "00000000-0000-0000-0000-000000000000", "hello", TRACE[:31], TRACE + "a",
    "123e4567-e89b-12d3-a456-42661417400", "123e4567e89b-12d3-a456-426614174000", f"{TRACE}\nx-evil: 1",
    "z" * 32, f"{TRACE[:16]} {TRACE[16:]}",
])
def test_parse_request_id_rejects_garbage(header: str | None) -> None:
    assert parse_request_id(header) is None


def test_parse_traceparent_valid() -> None:
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-01") == (TRACE, PARENT)
    assert parse_traceparent(f"00-{TRACE.upper()}-{PARENT.upper()}-00") == (TRACE, PARENT)


@pytest.mark.parametrize("header", [
    None, "",
    f"ff-{TRACE}-{PARENT}-01",
    f"00-{'0' * 32}-{PARENT}-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"00-{TRACE}-{PARENT}",
    f"00-{TRACE[:-1]}-{PARENT}-01",
    f"00-{TRACE}-{PARENT}-1",
    f"0-{TRACE}-{PARENT}-01",
    f"00_{TRACE}_{PARENT}_01",
    "garbage",
])
def test_parse_traceparent_rejects_invalid(header: str | None) -> None:
    assert parse_traceparent(header) is None


FRESH = "f" * 32


def fresh() -> str:
    return FRESH


def test_a_caller_request_id_is_kept_for_correlation_but_never_becomes_the_trace_id() -> None:
    """Issue #14 (12): a caller-chosen x-request-id must not graft its spans into another request's trace."""
    result = incoming_trace({"x-request-id": TRACE.upper()}, new_id=fresh)
    assert result == IncomingTrace(FRESH, None, "x-request-id", caller_request_id=TRACE)
    assert result.correlation() == {"correlation.request_id": TRACE}


def test_a_caller_traceparent_is_kept_for_correlation() -> None:
    result = incoming_trace({"traceparent": f"00-{TRACE}-{PARENT}-01"}, new_id=fresh)
    assert (result.trace_id, result.parent_span_id, result.source) == (FRESH, None, "traceparent")
    assert result.correlation() == {"correlation.trace_id": TRACE, "correlation.parent_span_id": PARENT}


def test_both_caller_ids_are_kept() -> None:
    other = "a" * 32
    result = incoming_trace({"x-request-id": other, "traceparent": f"00-{TRACE}-{PARENT}-01"}, new_id=fresh)
    assert result.source == "x-request-id" and result.trace_id == FRESH
    assert result.correlation() == {"correlation.request_id": other, "correlation.trace_id": TRACE,
                                    "correlation.parent_span_id": PARENT}


def test_invalid_request_id_falls_back_to_traceparent() -> None:
    result = incoming_trace({"x-request-id": "nope", "traceparent": f"00-{TRACE}-{PARENT}-01"})
    assert (result.caller_trace_id, result.source) == (TRACE, "traceparent")
    assert result.caller_request_id is None


@pytest.mark.parametrize("headers", [{}, {"x-request-id": "0" * 32}, {"x-request-id": "garbage"},
                                     {"traceparent": f"ff-{TRACE}-{PARENT}-01"}])
def test_generated_when_nothing_usable(headers: dict[str, str]) -> None:
    result = incoming_trace(headers)
    assert result.source == "generated"
    assert result.parent_span_id is None
    assert is_trace_id(result.trace_id)
    assert incoming_trace(headers).trace_id != result.trace_id


@given(st.text(max_size=80))
def test_any_request_id_is_kept_only_when_valid_and_the_trace_id_is_always_fresh(value: str) -> None:
    result = incoming_trace({"x-request-id": value})
    assert HEX32.match(result.trace_id)
    assert result.trace_id != "0" * 32
    assert result.caller_request_id == parse_request_id(value)
    if result.source == "x-request-id":
        assert result.caller_request_id in value.lower().replace("-", "")
    else:
        assert result.source == "generated"


@given(st.from_regex(r"\A[0-9a-fA-F]{32}\Z"))
def test_any_hex32_request_id_is_kept_lower_cased(value: str) -> None:
    result = incoming_trace({"x-request-id": value}, new_id=fresh)
    if value.strip("0") == "":
        assert result.source == "generated"
    else:
        assert result == IncomingTrace(FRESH, None, "x-request-id", caller_request_id=value.lower())
