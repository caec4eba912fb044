"""SQLite span store under ``.flux/``: the local adapter of :class:`SpanStore`.

One connection per thread (sqlite3 objects are not shared across threads), WAL
so that ``flux trace`` can read while ``flux dev`` writes, and ``INSERT OR
REPLACE`` keyed on (trace_id, span_id) so a retried write is idempotent.
Strings are made storable first (lone surrogates replaced); if a batch still fails,
it is written record by record, so one bad record never loses the others.

With a retention (``observability.retention_days``, as ``flux dev`` passes it), the writer deletes
traces and logs older than that on its first write and then at most once an hour, in the writing
thread and on its connection, so readers (``flux trace``, the dashboard) never wait on it. Without
it the file grows by ~260 bytes per span for as long as ``flux dev`` serves, and each write gets
slower as the table's indexes deepen. DynamoDB does the same in AWS with its TTL attribute.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from functions.observability.store import SpanStore, TraceSummary, summary_of
from functions.shared.local_io import open_sqlite
from functions.shared.spans import LOG_LEVELS, LogRecord, Span, is_request_row, storable, storable_tree

_log = logging.getLogger("flux.observability")
_SPAN_INSERT = "INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?)"
# A batch goes in as multi-row INSERTs of MAX_CHUNK rows and then powers of two (so a handful of statement
# texts, all in sqlite3's statement cache). Why: sqlite3 releases the GIL around every statement step, and
# executemany steps once per row; while the event loop thread is busy, each of those releases costs the writer
# a wait for the GIL and both threads a hand-over. Measured under a spinning thread, per span: 45-62 µs of
# writer CPU row by row, 12-21 µs in chunks (bench/PROFILE.md section 8). 256 rows of 11 columns stay far below
# SQLite's 32766 bound variables.
MAX_CHUNK = 256
PRUNE_INTERVAL_S = 3600.0
# A trace goes whole: first every span of a trace whose request row is older than the cutoff (found by the
# partial index), then any other span older than it. One statement with OR would delete a request row
# before SQLite evaluates the subquery that should have found its trace.
_PRUNE_TRACES = "DELETE FROM spans WHERE trace_id IN (SELECT trace_id FROM spans WHERE is_root = 1 AND start_us < ?)"
_PRUNE_SPANS = "DELETE FROM spans WHERE start_us < ?"
_PRUNE_LOGS = "DELETE FROM logs WHERE ts_us < ?"
_LOG_INSERT = "INSERT INTO logs (trace_id, span_id, ts_us, level, function, message, fields) VALUES (?,?,?,?,?,?,?)"


@functools.lru_cache(maxsize=32)
def _rows_statement(single: str, rows: int) -> str:
    """``single`` (an INSERT of one ``VALUES (?,...)`` row) extended to ``rows`` rows."""
    head, _, row = single.partition(" VALUES ")
    return f"{head} VALUES {','.join([row] * rows)}"


def _chunks(count: int) -> list[int]:
    """Row counts that add up to ``count``: MAX_CHUNK as often as it fits, then descending powers of two."""
    sizes = [MAX_CHUNK] * (count // MAX_CHUNK)
    rest = count % MAX_CHUNK
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    status TEXT NOT NULL,
    function TEXT NOT NULL DEFAULT '',
    is_root INTEGER NOT NULL DEFAULT 0,
    attrs TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
-- Only request rows are listed by time: a partial index spares every other span an index insert.
DROP INDEX IF EXISTS spans_roots;
CREATE INDEX IF NOT EXISTS spans_root_starts ON spans (start_us) WHERE is_root = 1;
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL,
    span_id TEXT,
    ts_us INTEGER NOT NULL,
    level TEXT NOT NULL,
    function TEXT NOT NULL,
    message TEXT NOT NULL,
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_ts ON logs (ts_us);
CREATE INDEX IF NOT EXISTS logs_trace ON logs (trace_id);
"""


# json.dumps(..., default=str) builds a new encoder on every call; one shared encoder halves the cost.
_encode = json.JSONEncoder(default=str).encode
# msgspec writes the same JSON values ~9x faster (0.3 against 2.8 µs for a db span's attributes), but
# not for everything: NaN and infinities become null, and dates, UUIDs, decimals, bytes, sets and
# dataclasses get msgspec's own forms where the json module (and the DynamoDB store) writes str().
_fast_encode = msgspec.json.Encoder().encode
_JSON_SCALARS = frozenset({str, int, bool, type(None)})
_PLAIN_DEPTH = 64  # deeper values take the json module's path (and its recursion limit), as before


def _json(value: Any) -> str:
    """``value`` as stored JSON, lone surrogates replaced (:func:`storable_tree`).

    Attributes made only of JSON's own types (the spans Flux writes, and everything decoded from a
    worker's frames) go through msgspec, whose text reads back to the same value; anything else, and
    a string msgspec cannot encode (a lone surrogate), through the json module as before.
    json.dumps escapes every character outside ASCII, so a surrogate, lone or paired, can only
    appear as ``\\ud...``: without that sequence the text is what storable_tree would have given, and
    the walk over the value (a third of a span's write cost) is skipped.
    """
    if _plain(value):
        try:
            return _fast_encode(value).decode()
        except UnicodeEncodeError:
            pass
    text = _encode(value)
    return text if "\\ud" not in text else _encode(storable_tree(value))


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is JSON's own types only: str keys, finite floats, no subclasses, not too deep."""
    kind = type(value)
    if kind is dict:
        if depth > _PLAIN_DEPTH:
            return False
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _JSON_SCALARS and not _plain(item, depth + 1)):
                return False
        return True
    if kind is list or kind is tuple:
        if depth > _PLAIN_DEPTH:
            return False
        for item in value:  # noqa: SIM110 - a loop: all() over a generator doubled this walk's cost
            if type(item) not in _JSON_SCALARS and not _plain(item, depth + 1):
                return False
        return True
    if kind is float:
        return math.isfinite(value)
    return kind in _JSON_SCALARS


def _insert_chunked(conn: sqlite3.Connection, single: str, rows: list[tuple[Any, ...]]) -> None:
    """Every row of ``rows`` through as few statement steps as the chunk sizes allow (in order)."""
    start = 0
    for size in _chunks(len(rows)):
        chunk = rows[start:start + size]
        start += size
        if size == 1:
            conn.execute(single, chunk[0])
        else:
            conn.execute(_rows_statement(single, size), [value for row in chunk for value in row])


class SqliteSpanStore(SpanStore):
    def __init__(self, path: str | Path, *, retention_days: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._clock = clock
        self.set_retention(retention_days)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def set_retention(self, days: int | None) -> None:
        """Keep ``days`` of traces and logs (None: keep everything); the next write prunes."""
        self.retention_s = days * 86_400 if days is not None else None
        self._pruned_at: float | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_sqlite(self.path)
            self._local.conn = conn
        return conn

    def write_spans(self, spans: Sequence[Span]) -> None:
        if not spans:
            return
        rows = [
            (s.trace_id, s.span_id, s.parent_span_id, storable(s.kind), storable(s.name), s.start_us, s.duration_us,
             s.status, storable(str(s.attrs.get("function") or "")), 1 if is_request_row(s) else 0,
             _json(s.attrs))
            for s in spans
        ]
        self._insert(_SPAN_INSERT, rows, "span")

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        if not logs:
            return
        rows = [(r.trace_id, r.span_id, r.ts_us, r.level, storable(r.function), storable(r.message),
                 _json(r.fields))
                for r in logs]
        self._insert(_LOG_INSERT, rows, "log")

    def prune(self) -> tuple[int, int]:
        """Delete the traces and logs older than the retention; (spans, logs) deleted."""
        if self.retention_s is None:
            return (0, 0)
        now = self._clock()
        self._pruned_at = now
        cutoff_us = int((now - self.retention_s) * 1_000_000)
        conn = self._connect()
        with conn:
            conn.execute("BEGIN")
            spans = conn.execute(_PRUNE_TRACES, (cutoff_us,)).rowcount
            spans += conn.execute(_PRUNE_SPANS, (cutoff_us,)).rowcount
            logs = conn.execute(_PRUNE_LOGS, (cutoff_us,)).rowcount
        if spans or logs:
            _log.info("span store: deleted %d spans and %d logs older than %d days", spans, logs,
                      self.retention_s // 86_400)
        return (spans, logs)

    def _prune_when_due(self) -> None:
        if self.retention_s is None:
            return
        if self._pruned_at is not None and self._clock() - self._pruned_at < PRUNE_INTERVAL_S:
            return
        try:
            self.prune()
        except sqlite3.Error as exc:  # a locked or full store must not cost the batch being written
            self._pruned_at = self._clock()
            _log.warning("span store: could not delete expired traces (%s); retrying in an hour", exc)

    def _insert(self, sql: str, rows: list[tuple[Any, ...]], what: str) -> None:
        self._prune_when_due()
        conn = self._connect()
        try:
            with conn:
                conn.execute("BEGIN")
                _insert_chunked(conn, sql, rows)
            return
        except sqlite3.OperationalError:
            raise  # locked, disk full, read-only: the buffered sink retries the whole batch
        except (sqlite3.Error, ValueError, OverflowError, TypeError):
            if len(rows) == 1:
                raise
        refused = 0
        for row in rows:
            try:
                with conn:
                    conn.execute(sql, row)
            except (sqlite3.Error, ValueError, OverflowError, TypeError) as exc:
                refused += 1
                _log.warning("span store refused one %s record (%s); the rest of its batch is kept", what, exc)
        if refused == len(rows):
            raise ValueError(f"span store refused all {len(rows)} {what} records of a batch")

    def get_trace(self, trace_id: str) -> list[Span]:
        cur = self._connect().execute(
            "SELECT trace_id, span_id, parent_span_id, kind, name, start_us, duration_us, status, attrs "
            "FROM spans WHERE trace_id = ? ORDER BY start_us, span_id", (trace_id,))
        return [Span(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8])) for r in cur]

    def list_traces(self, *, function: str | None = None, status: str | None = None,
                    since_us: int | None = None, limit: int = 50) -> list[TraceSummary]:
        where = ["is_root = 1"]
        args: list[object] = []
        if function:
            where.append("function = ?")
            args.append(function)
        if status:
            where.append("status = ?")
            args.append(status)
        if since_us is not None:
            where.append("start_us >= ?")
            args.append(since_us)
        args.append(max(1, min(limit, 1000)))
        cur = self._connect().execute(
            "SELECT trace_id, span_id, parent_span_id, kind, name, start_us, duration_us, status, attrs "
            f"FROM spans WHERE {' AND '.join(where)} ORDER BY start_us DESC LIMIT ?", args)
        return [summary_of(Span(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))) for r in cur]

    def list_logs(self, *, function: str | None = None, level: str | None = None, since_us: int | None = None,
                  request_id: str | None = None, limit: int = 100) -> list[LogRecord]:
        where: list[str] = []
        args: list[object] = []
        if function:
            where.append("function = ?")
            args.append(function)
        if level:
            # A level filter means "this level and more severe", as log tools do.
            allowed = LOG_LEVELS[LOG_LEVELS.index(level):] if level in LOG_LEVELS else (level,)
            where.append(f"level IN ({','.join('?' * len(allowed))})")
            args.extend(allowed)
        if since_us is not None:
            where.append("ts_us >= ?")
            args.append(since_us)
        if request_id:
            where.append("trace_id = ?")
            args.append(request_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        args.append(max(1, min(limit, 10_000)))
        cur = self._connect().execute(
            f"SELECT trace_id, span_id, ts_us, level, function, message, fields FROM logs {clause} "
            "ORDER BY ts_us DESC, id DESC LIMIT ?", args)
        rows = [LogRecord(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in cur]
        rows.reverse()
        return rows

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
