"""The SQLite span store (functions/observability/sqlite_store.py), on a tmp_path file."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.observability import sqlite_store
from functions.observability.sqlite_store import SqliteSpanStore
from functions.shared.spans import LogRecord, Span, storable_tree

T1 = "11111111111111111111111111111111"
T2 = "22222222222222222222222222222222"
T3 = "33333333333333333333333333333333"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteSpanStore]:
    s = SqliteSpanStore(tmp_path / ".flux" / "traces.db")
    yield s
    s.close()


def gateway(trace: str, start: int, *, function: str = "create_order", status: str = "ok",
            http_status: int = 200) -> Span:
    return Span(trace, f"{start:016x}", None, "gateway", f"POST /{function}", start, 100, status,
                {"function": function, "http.method": "POST", "http.route": f"/{function}",
                 "http.status": http_status})


def child(trace: str, span_id: str, parent: str, start: int, **attrs: object) -> Span:
    return Span(trace, span_id, parent, "db", "select orders", start, 10, "ok", {"function": "create_order", **attrs})


def log(trace: str, ts: int, level: str = "info", function: str = "create_order", message: str = "") -> LogRecord:
    return LogRecord(trace, None, ts, level, function, message or f"{level}@{ts}", {"ts": ts})


def test_get_trace_orders_by_start_then_span_id(store: SqliteSpanStore) -> None:
    root = gateway(T1, 100)
    spans = [child(T1, "c", root.span_id, 300), child(T1, "b", root.span_id, 200), root,
             child(T1, "a", root.span_id, 200)]
    store.write_spans(spans)
    store.write_spans([gateway(T2, 50)])
    got = store.get_trace(T1)
    assert [s.span_id for s in got] == [root.span_id, "a", "b", "c"]
    assert got[0] == root
    assert got[1].parent_span_id == root.span_id
    assert store.get_trace("f" * 32) == []


def test_rewriting_the_same_span_is_idempotent(store: SqliteSpanStore) -> None:
    span = gateway(T1, 100)
    store.write_spans([span])
    updated = Span(span.trace_id, span.span_id, None, "gateway", span.name, 100, 999, "error", {"function": "x"})
    store.write_spans([updated])
    store.write_spans([updated])
    assert store.get_trace(T1) == [updated]
    assert len(store.list_traces()) == 1


def test_attrs_round_trip_and_non_json_values_become_strings(store: SqliteSpanStore) -> None:
    when = datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)
    store.write_spans([Span(T1, "s", None, "custom", "n", 1, 2, "ok",
                            {"nested": {"a": [1, 2]}, "flag": True, "when": when})])
    attrs = store.get_trace(T1)[0].attrs
    assert attrs == {"nested": {"a": [1, 2]}, "flag": True, "when": str(when)}


def test_list_traces_returns_only_roots_newest_first(store: SqliteSpanStore) -> None:
    r1, r2 = gateway(T1, 100), gateway(T2, 200, function="list_orders", status="error", http_status=500)
    queue_root = Span(T3, "q" * 16, "e" * 16, "queue", "async → send_invoice", 300, 5, "ok",
                      {"function": "send_invoice", "root": True})
    store.write_spans([r1, child(T1, "c1", r1.span_id, 150), r2, child(T2, "c2", r2.span_id, 250), queue_root])
    summaries = store.list_traces()
    assert [s.trace_id for s in summaries] == [T3, T2, T1]
    second = summaries[1]
    assert (second.name, second.function, second.kind, second.status, second.http_status, second.start_us,
            second.duration_us, second.method, second.route) == (
        "POST /list_orders", "list_orders", "gateway", "error", 500, 200, 100, "POST", "/list_orders")
    assert summaries[0].kind == "queue" and summaries[0].http_status is None


def test_list_traces_filters(store: SqliteSpanStore) -> None:
    store.write_spans([gateway(T1, 100, function="a"), gateway(T2, 200, function="b", status="error"),
                       gateway(T3, 300, function="a", status="error")])
    assert [s.trace_id for s in store.list_traces(function="a")] == [T3, T1]
    assert [s.trace_id for s in store.list_traces(status="error")] == [T3, T2]
    assert [s.trace_id for s in store.list_traces(function="a", status="ok")] == [T1]
    assert [s.trace_id for s in store.list_traces(since_us=200)] == [T3, T2]
    assert [s.trace_id for s in store.list_traces(limit=2)] == [T3, T2]
    assert [s.trace_id for s in store.list_traces(limit=0)] == [T3]
    assert store.list_traces(function="zzz") == []


def test_list_logs_is_oldest_first_within_the_newest_limit(store: SqliteSpanStore) -> None:
    store.write_logs([log(T1, ts) for ts in (5, 1, 4, 2, 3)])
    assert [r.ts_us for r in store.list_logs()] == [1, 2, 3, 4, 5]
    assert [r.ts_us for r in store.list_logs(limit=3)] == [3, 4, 5]


def test_list_logs_same_timestamp_keeps_insertion_order(store: SqliteSpanStore) -> None:
    store.write_logs([log(T1, 7, message="first"), log(T1, 7, message="second")])
    store.write_logs([log(T1, 7, message="third")])
    assert [r.message for r in store.list_logs()] == ["first", "second", "third"]
    assert [r.message for r in store.list_logs(limit=2)] == ["second", "third"]


@pytest.mark.parametrize(("level", "expected"), [
    ("debug", ["debug", "info", "warn", "error"]),
    ("info", ["info", "warn", "error"]),
    ("warn", ["warn", "error"]),
    ("error", ["error"]),
    ("fatal", []),
    (None, ["debug", "info", "warn", "error"]),
])
def test_list_logs_level_means_that_level_and_more_severe(store: SqliteSpanStore, level: str | None,
                                                         expected: list[str]) -> None:
    store.write_logs([log(T1, i, lvl) for i, lvl in enumerate(["debug", "info", "warn", "error"])])
    assert [r.level for r in store.list_logs(level=level)] == expected


def test_list_logs_filters(store: SqliteSpanStore) -> None:
    store.write_logs([log(T1, 1, function="a"), log(T2, 2, function="b", level="error"), log(T1, 3, function="b")])
    assert [r.ts_us for r in store.list_logs(function="b")] == [2, 3]
    assert [r.ts_us for r in store.list_logs(request_id=T1)] == [1, 3]
    assert [r.ts_us for r in store.list_logs(since_us=2)] == [2, 3]
    assert [r.ts_us for r in store.list_logs(function="b", level="error")] == [2]
    assert store.list_logs(request_id=T3) == []


def test_log_records_round_trip(store: SqliteSpanStore) -> None:
    record = LogRecord(T1, "abcdabcdabcdabcd", 42, "warn", "fn", "msg", {"orderId": 7, "tags": ["a"]})
    store.write_logs([record])
    assert store.list_logs() == [record]


def test_empty_writes_are_no_ops(store: SqliteSpanStore) -> None:
    store.write_spans([])
    store.write_logs([])
    assert store.list_traces() == [] and store.list_logs() == []


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "traces.db"
    first = SqliteSpanStore(path)
    first.write_spans([gateway(T1, 1)])
    first.write_logs([log(T1, 1)])
    first.close()
    second = SqliteSpanStore(path)
    try:
        assert [s.trace_id for s in second.list_traces()] == [T1]
        assert len(second.list_logs()) == 1
    finally:
        second.close()


def test_one_bad_record_does_not_lose_the_rest_of_its_batch(store: SqliteSpanStore) -> None:
    """Issue #14 (6): a lone surrogate is stored as U+FFFD, and a record SQLite refuses (an integer over
    64 bits) is dropped alone; the other requests' spans and logs of the same batch are kept."""
    bad_text = Span(T1, "a" * 16, None, "gateway", "GET /x\ud800", 100, 1, "ok", {"function": "f\udfff"})
    too_big = Span(T2, "b" * 16, None, "gateway", "GET /y", 2**70, 1, "ok", {})
    good = gateway(T3, 300)
    store.write_spans([bad_text, too_big, good])
    assert [s.name for s in store.get_trace(T1)] == ["GET /x\ufffd"]
    assert store.get_trace(T2) == []
    assert store.get_trace(T3) == [good]
    store.write_logs([LogRecord(T1, None, 1, "info", "f", "lone \ud800", {"k\ud800": 1}), log(T3, 2)])
    assert [r.message for r in store.list_logs()] == ["lone \ufffd", "info@2"]


def test_a_custom_span_marked_root_is_not_a_request_row(store: SqliteSpanStore) -> None:
    r1 = gateway(T1, 100)
    fake = Span(T2, "c" * 16, "d" * 16, "custom", "GET /fake", 200, 1, "ok", {"root": True})
    store.write_spans([r1, fake])
    assert [s.trace_id for s in store.list_traces()] == [T1]


def test_attributes_keep_every_character_and_lose_only_lone_surrogates(store: SqliteSpanStore) -> None:
    """The attrs encoding skips the surrogate walk when json.dumps shows none: a pair (an emoji) is kept,
    a lone one in a value or a key becomes U+FFFD, a literal backslash-u text is kept as written."""
    attrs = {"emoji": "ok \U0001f600", "lone": "x\udc00", "k\ud800": 1, "text": "\\ud800 is not one", "n": [1, 2.5]}
    store.write_spans([Span(T1, "e" * 16, None, "gateway", "GET /e", 100, 1, "ok", attrs)])
    [span] = store.get_trace(T1)
    assert span.attrs == {"emoji": "ok \U0001f600", "lone": "x\ufffd", "k\ufffd": 1, "text": "\\ud800 is not one",
                          "n": [1, 2.5]}
    plain = {"function": "f", "http.status": 200, "cold": False, "note": "é ü 中"}
    store.write_spans([Span(T2, "f" * 16, None, "gateway", "GET /p", 200, 1, "ok", plain)])
    assert store.get_trace(T2)[0].attrs == plain


DAY_S = 86_400
NOW_S = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def test_traces_and_logs_older_than_the_retention_go_on_the_first_write(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    old, fresh = _us(NOW_S - 15 * DAY_S), _us(NOW_S - 13 * DAY_S)
    seeded = SqliteSpanStore(path)  # no retention: the CLI's reader, which never deletes
    seeded.write_spans([gateway(T1, old), child(T1, "c1", f"{old:016x}", old + 50),
                        gateway(T2, fresh)])
    seeded.write_logs([log(T1, old), log(T2, fresh)])
    assert seeded.get_trace(T1) and seeded.list_logs(limit=10)[0].ts_us == old
    seeded.close()

    store = SqliteSpanStore(path, retention_days=14, clock=Clock(NOW_S))
    store.write_spans([gateway(T3, _us(NOW_S))])
    assert store.get_trace(T1) == []
    assert [t.trace_id for t in store.list_traces()] == [T3, T2]
    assert [r.ts_us for r in store.list_logs(limit=10)] == [fresh]
    store.close()


def test_a_trace_goes_whole_when_its_request_row_expires(tmp_path: Path) -> None:
    store = SqliteSpanStore(tmp_path / "traces.db", retention_days=1, clock=Clock(NOW_S))
    root = _us(NOW_S - DAY_S - 1)
    store.write_spans([gateway(T1, root), child(T1, "c1", f"{root:016x}", root + 2_000_000)])
    store.prune()
    assert store.get_trace(T1) == []
    store.close()


def test_expired_rows_are_looked_for_at_most_once_an_hour(tmp_path: Path) -> None:
    clock = Clock(NOW_S)
    store = SqliteSpanStore(tmp_path / "traces.db", retention_days=1, clock=clock)
    store.write_spans([gateway(T1, _us(NOW_S))])
    stale = _us(NOW_S - 2 * DAY_S)
    store.write_spans([gateway(T2, stale)])
    clock.now += 3599
    store.write_logs([log(T3, _us(clock.now))])
    assert store.get_trace(T2), "pruned again within the hour"
    clock.now += 2
    store.write_logs([log(T3, _us(clock.now))])
    assert store.get_trace(T2) == []
    store.close()


def test_a_store_that_cannot_prune_still_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    store = SqliteSpanStore(tmp_path / "traces.db", retention_days=1, clock=Clock(NOW_S))

    def locked() -> tuple[int, int]:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "prune", locked)
    store.write_spans([gateway(T1, _us(NOW_S))])
    assert store.get_trace(T1)
    store.close()


def _inserts_seen(store: SqliteSpanStore) -> list[str]:
    """Every statement the store's connection runs, with its values expanded (rows joined by "),(")."""
    statements: list[str] = []
    store._connect().set_trace_callback(statements.append)
    return statements


def test_a_large_batch_goes_in_as_a_few_multi_row_statements(store: SqliteSpanStore) -> None:
    """300 spans: one statement of 256 rows, then 32, 8 and 4, not 300 steps (each step releases the GIL)."""
    statements = _inserts_seen(store)
    spans = [child(f"{i:032x}", f"{i:016x}", "p" * 16, i) for i in range(300)]
    store.write_spans(spans)
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert [s.count("),(") + 1 for s in inserts] == [256, 32, 8, 4]
    assert sum(len(store.get_trace(s.trace_id)) for s in spans) == 300
    assert store.get_trace(spans[299].trace_id) == [spans[299]]


def test_a_batch_keeps_its_order_across_chunks(store: SqliteSpanStore) -> None:
    """The last write of a span in a batch wins, as row by row; logs keep their order across chunks."""
    first = [child(T1, f"{i:016x}", "p" * 16, i, version=1) for i in range(200)]
    again = [child(T1, f"{i:016x}", "p" * 16, i, version=2) for i in range(100)]
    store.write_spans(first + again)
    versions = [s.attrs["version"] for s in store.get_trace(T1)]
    assert versions == [2] * 100 + [1] * 100
    store.write_logs([log(T1, 5, message=f"m{i}") for i in range(300)])
    assert [r.message for r in store.list_logs(limit=1000)] == [f"m{i}" for i in range(300)]


def test_one_bad_record_in_a_large_batch_loses_only_itself(store: SqliteSpanStore) -> None:
    spans = [child(f"{i:032x}", f"{i:016x}", "p" * 16, i) for i in range(300)]
    spans[270] = Span(spans[270].trace_id, "b" * 16, None, "gateway", "GET /y", 2**70, 1, "ok", {})
    store.write_spans(spans)
    kept = [s for s in spans if store.get_trace(s.trace_id)]
    assert len(kept) == 299 and spans[270] not in kept


def _old_json(value: object) -> str:
    """The stored text before msgspec: the json module, lone surrogates replaced."""
    text = sqlite_store._encode(value)
    return text if "\\ud" not in text else sqlite_store._encode(storable_tree(value))


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(alphabet=st.characters(), max_size=8)
            | st.datetimes() | st.uuids() | st.decimals(allow_nan=False) | st.binary(max_size=4))
_keys = st.text(max_size=4) | st.integers(min_value=-5, max_value=5) | st.booleans() | st.none()
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                       | st.dictionaries(_keys, inner, max_size=3) | st.frozensets(st.integers(), max_size=2),
                       max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _values, max_size=5))
def test_stored_attributes_read_back_as_the_json_module_wrote_them(attrs: dict) -> None:
    """msgspec writes plain attributes; whatever it is given, the text reads back to what json wrote."""
    assert json.dumps(json.loads(sqlite_store._json(attrs))) == json.dumps(json.loads(_old_json(attrs)))


@pytest.mark.parametrize("attrs", [
    {"ratio": float("nan")}, {"big": float("inf")}, {"when": datetime.datetime(2026, 12, 4, 21, 0)},
    {"ids": {1, 2}}, {"nested": {1: "int key"}}, {"lone": "\ud800"}, {"deep": _nested(sqlite_store._PLAIN_DEPTH + 5)},
])
def test_attributes_msgspec_would_write_differently_take_the_json_module(attrs: dict) -> None:
    assert json.dumps(json.loads(sqlite_store._json(attrs))) == json.dumps(json.loads(_old_json(attrs)))
