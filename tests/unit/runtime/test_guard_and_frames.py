"""Pure parts of issue #14: frame validation (functions/runtime/frames.py) and per-request bounds
(functions/runtime/guard.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.runtime.frames import DoneFrame, FrameError, FrameNotJson, LogFrame, SpanFrame, decode_frame
from functions.runtime.guard import MAX_ATTRS_CHARS, MAX_SPANS, Budget, GuardedSink, bounded_attrs, clip, clip_tree
from functions.shared.spans import LogRecord, MemorySink, Span, storable_tree


def parse(value: object) -> object:
    """The frame the worker would decode from ``value`` sent as one JSON line."""
    return decode_frame(json.dumps(value).encode())


@pytest.mark.parametrize("frame, where", [
    ({"t": "log", "inv": 1, "ts_us": "x", "level": "info", "message": "m"}, "ts_us"),
    ({"t": "log", "inv": True, "ts_us": 1, "level": "info", "message": "m"}, "inv"),
    ({"t": "done", "id": "1", "ok": True}, "id"),
    ({"t": "span", "inv": 1, "span": {"span_id": "zz", "kind": "custom", "name": "n", "start_us": 1,
                                      "duration_us": 1, "status": "ok"}}, "span_id"),
    ({"t": "span", "inv": 1, "span": {"span_id": "0" * 16 + "\n", "kind": "custom", "name": "n", "start_us": 1,
                                      "duration_us": 1, "status": "ok"}}, "span_id"),
    ({"t": "span", "inv": 1, "span": {"span_id": "0" * 16, "kind": "gateway", "name": "n", "start_us": 1,
                                      "duration_us": 1, "status": "ok"}}, "kind"),
    ({"t": "nope"}, "frame"),
    (["not", "an", "object"], "frame"),
])
def test_malformed_frames_are_refused_with_the_field(frame: object, where: str) -> None:
    with pytest.raises(FrameError, match=where if where != "frame" else "malformed"):
        parse(frame)


def test_well_formed_frames_parse() -> None:
    assert isinstance(parse({"t": "done", "id": 3, "ok": True, "value": {"a": 1}, "pending": 0}), DoneFrame)
    log = parse({"t": "log", "inv": 3, "span": "", "ts_us": 5, "level": "info", "message": "m", "fields": {}})
    assert isinstance(log, LogFrame) and log.ts_us == 5
    span = parse({"t": "span", "inv": 3, "span": {"span_id": "a" * 16, "parent_span_id": None, "kind": "http",
                                                        "name": "GET x", "start_us": 1, "duration_us": 2,
                                                        "status": "error", "attrs": {"k": 1}}})
    assert isinstance(span, SpanFrame) and span.span.attrs == {"k": 1}


def test_a_line_that_is_not_json_and_a_malformed_frame_say_which_and_keep_what_was_decoded() -> None:
    for line in (b"not json", b'{"t": "done", "id": 1, "ok": tru}', b'{"t": "log", "message": "\xff"}'):
        with pytest.raises(FrameNotJson):
            decode_frame(line)
    with pytest.raises(FrameError, match=r"malformed done frame from the worker: ok: Expected `bool`") as caught:
        decode_frame(b'{"t": "done", "id": 7, "ok": 1}')
    assert caught.value.data == {"t": "done", "id": 7, "ok": 1}, "the worker finds the invocation it belongs to"
    lone = decode_frame(b'{"t": "log", "inv": 1, "ts_us": 1, "level": "info", "message": "a\\ud800"}')
    assert isinstance(lone, LogFrame) and lone.message == "a\ud800", "JSON.stringify writes lone surrogates so"
    with pytest.raises(FrameError, match="ts_us") as caught:
        decode_frame(b'{"t": "log", "inv": 2, "ts_us": "x", "level": "info", "message": "\\udc00"}')
    assert caught.value.data["inv"] == 2
    with pytest.raises(RecursionError):
        decode_frame(b'{"t": "done", "id": 1, "ok": true, "value": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    with pytest.raises(RecursionError):  # malformed too, but only the too-deep path can tell whose it was
        decode_frame(b'{"t": "done", "id": 1, "ok": "x", "value": ' + b"[" * 5000 + b"]" * 5000 + b"}")


@pytest.mark.parametrize("line", [
    rb'{"t": "log", "inv": 1, "ts_us": 1, "level": "info", "message": "m", "span": "\ud800"}',
    rb'{"t": "log", "inv": 1, "ts_us": 1, "level": "\udfff", "message": "m"}',
    rb'{"t": "call", "id": 1, "inv": 1, "method": "db.\ud800"}',
    rb'{"t": "done", "id": 1, "ok": true, "response": {"status": 200, "headers": [["x-a", "\ud800"]]}}',
    rb'{"t": "span", "inv": 1, "span": "\ud83d"}',  # a string where a span belongs: msgspec cannot encode it
    rb'{"t": "\ud800"}',
])
def test_a_lone_surrogate_is_refused_where_the_host_copies_the_string_into_ids_or_headers(line: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame(line)


# Any code point, lone surrogates often (JSON.stringify writes them as escapes msgspec's decoder refuses).
_SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
_ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()) | _SURROGATE, max_size=8)
_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _ANY_TEXT,
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ANY_TEXT, inner, max_size=3),
                        max_leaves=10)
# Mostly real tags, so conversion reaches the fields behind them.
_FRAMEISH = st.builds(lambda tag, rest: {"t": tag, **rest},
                      st.sampled_from(["ready", "done", "idle", "log", "span", "call"]) | _JSONISH,
                      st.dictionaries(st.sampled_from(["id", "inv", "ok", "span", "level", "message", "method",
                                                       "response", "ts_us", "fields", "value"]), _JSONISH, max_size=6))


@settings(max_examples=400, deadline=None)
@given(st.one_of(_FRAMEISH.map(lambda d: json.dumps(d).encode()), _JSONISH.map(lambda v: json.dumps(v).encode()),
                 st.binary(max_size=64)))
def test_any_line_is_a_frame_or_a_frame_error_never_another_exception(line: bytes) -> None:
    """The reader handles FrameError and RecursionError; anything else would end it and orphan the worker."""
    try:
        decode_frame(line)
    except FrameError:
        pass


def test_clip_marks_what_it_cut() -> None:
    assert clip("abc", 5) == "abc"
    assert clip("x" * 10, 4) == "xxxx... [truncated] (10 characters)"


def test_bounded_attrs_keeps_the_total_under_the_cap_and_says_so() -> None:
    attrs = {f"k{i}": "v" * 4000 for i in range(20)}
    out = bounded_attrs(attrs)
    assert len(json.dumps(out)) <= MAX_ATTRS_CHARS + 200
    assert "attrs.truncated" in out


def test_the_guard_redacts_keys_and_counts_dropped_spans() -> None:
    inner = MemorySink()
    budget = Budget()
    guard = GuardedSink(inner, {"topsecret"}, budget)
    guard.write_logs([LogRecord("t" * 32, None, 1, "info", "f", "has topsecret", {"topsecret": ["topsecret"]})])
    assert inner.logs[0].message == "has [redacted]"
    assert inner.logs[0].fields == {"[redacted]": ["[redacted]"]}
    guard.write_spans([Span("t" * 32, f"{i:016x}", "p" * 16, "custom", "n", 1, 1) for i in range(MAX_SPANS + 5)])
    assert len(inner.spans) == MAX_SPANS
    assert budget.summary() == {"spans.dropped": 5}


def _reference_attrs(attrs: dict) -> dict:
    """What GuardedSink stored before its single-walk fast path: clip, measure the JSON, cut, make storable."""
    clipped = clip_tree(attrs)
    size = len(json.dumps(clipped, default=str))
    if size > MAX_ATTRS_CHARS:
        kept, used = {}, 0
        for key, value in clipped.items():
            cost = len(json.dumps({key: value}, default=str))
            if used + cost > MAX_ATTRS_CHARS:
                kept["attrs.truncated"] = f"{len(clipped) - len(kept)} attributes dropped ({size} characters in all)"
                break
            kept[key] = value
            used += cost
        clipped = kept
    return storable_tree(clipped)


_TEXT = st.one_of(st.text(max_size=20), st.text(min_size=3000, max_size=5000), st.just("\ud800 lone"),
                  st.just("é" * 4100))
_VALUES = st.one_of(_TEXT, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                    st.lists(_TEXT, max_size=3), st.dictionaries(_TEXT, _TEXT, max_size=2))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=300), _VALUES, max_size=40))
def test_a_cleaned_span_stores_what_the_reference_pipeline_stores(attrs: dict) -> None:
    span = Span("a" * 32, "b" * 16, None, "custom", "x", 1, 2, "ok", attrs)
    cleaned = GuardedSink(MemorySink(), set(), Budget()).clean_span(span)
    assert cleaned.attrs == _reference_attrs(attrs)
