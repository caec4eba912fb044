"""The local adapter of :class:`JobQueue`: one SQLite file, ``<project>/.flux/queue.db``.

It models SQS's semantics so that ``flux dev`` behaves like AWS: a received
message is hidden for a visibility timeout and comes back if it is not acked; the
receive count is the attempt number; a message received ``max_attempts`` times
without an ack goes to the dead-letter state at its next receive (the redrive
policy); while the oldest unfinished message of a FIFO group is in flight or
waiting for its retry, the group's later messages are not delivered.

Every change is one ``BEGIN IMMEDIATE`` transaction, so several threads (the
dispatcher's worker threads) and processes (``flux dev`` and ``flux queue dlq
replay``) can share the file. Rows are kept after success (``state = 'done'``):
a done job is never delivered again, and acking is the same write that records
success.

A delivery remembers its lease owner (pid + a token of the queue object that
received it). :meth:`SqliteJobQueue.recover_orphaned_leases` makes the deliveries
of a dead owner visible at once, so jobs that were running when ``flux dev`` was
killed run again as soon as it restarts, instead of after their visibility timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from functions.queue_consumer.errors import JobNotFound, QueueUnavailable
from functions.queue_consumer.message import JobMessage
from functions.queue_consumer.ports import DlqEntry, JobQueue, QueueStats, ReceivedJob, SendResult
from functions.shared.local_io import open_sqlite, pid_alive

_log = logging.getLogger("flux.queue")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    function TEXT NOT NULL,
    grp TEXT,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    visible_at_us INTEGER NOT NULL,
    in_flight INTEGER NOT NULL DEFAULT 0,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    lease_owner TEXT,
    last_error TEXT NOT NULL DEFAULT '',
    enqueued_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, visible_at_us);
CREATE INDEX IF NOT EXISTS jobs_group ON jobs (function, grp, state, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    function TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (function, key)
);
CREATE TABLE IF NOT EXISTS counters (
    function TEXT PRIMARY KEY,
    done INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0
);
"""

# Only the oldest unfinished message of a group may be delivered (FIFO per group).
_READY = """
SELECT seq, job_id, function, body, receive_count FROM jobs AS j
WHERE state = 'queued' AND visible_at_us <= :now {function_filter}
  AND (grp IS NULL OR NOT EXISTS (
        SELECT 1 FROM jobs AS e
        WHERE e.function = j.function AND e.grp = j.grp AND e.state = 'queued' AND e.seq < j.seq))
ORDER BY visible_at_us, seq
LIMIT :limit
"""

_LIVE_OWNERS: set[str] = set()
_LIVE_LOCK = threading.Lock()

# One in-process writer lock per queue file. SQLite's busy handler makes a blocked writer sleep and
# poll with growing sleeps (up to 100 ms each), so under flux dev, where pushes from many requests and
# the dispatcher's threads write at once, a push could wait more than a second for a lock that had
# long been free. Threads of this process queue on this lock instead and are woken at release; the
# busy timeout is left for other processes (`flux queue dlq replay`).
_WRITE_LOCKS: dict[Path, threading.Lock] = {}


def _write_lock(path: Path) -> threading.Lock:
    with _LIVE_LOCK:
        return _WRITE_LOCKS.setdefault(path.resolve(), threading.Lock())

MaxAttempts = int | Mapping[str, int] | Callable[[str], int]


def _max_attempts_fn(value: MaxAttempts) -> Callable[[str], int]:
    if isinstance(value, int):
        return lambda _function: value
    if isinstance(value, Mapping):
        table = dict(value)
        return lambda function: table.get(function, 3)
    return value



class SqliteJobQueue(JobQueue):
    """Durable local queue. ``max_attempts``: per function (mapping or callable) or one number."""

    # receive() delivers only rows still 'queued', in the same transaction that leases them.
    receive_excludes_done = True

    def __init__(self, path: str | Path, *, max_attempts: MaxAttempts = 3,
                 clock: Callable[[], float] = time.time, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._max_attempts = _max_attempts_fn(max_attempts)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[tuple[sqlite3.Connection, threading.Lock]] = []
        self._conn_lock = threading.Lock()
        self._write = _write_lock(self.path)
        self._closed = False
        self.owner = f"{os.getpid()}:{os.urandom(6).hex()}"
        with _LIVE_LOCK:
            _LIVE_OWNERS.add(self.owner)
        with self._use() as conn:
            conn.executescript(_SCHEMA)

    # -- plumbing --------------------------------------------------------------------------------

    def set_max_attempts(self, max_attempts: MaxAttempts) -> None:
        """Called on hot reload when flux.json files change."""
        self._max_attempts = _max_attempts_fn(max_attempts)

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise QueueUnavailable(f"local queue {self.path} is closed")
            conn = open_sqlite(self.path, timeout_s=self._busy_timeout_s)
            self._local.conn = conn
            self._local.lock = threading.Lock()
            with self._conn_lock:
                self._connections.append((conn, self._local.lock))
        return conn

    @contextlib.contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, held so that :meth:`close` waits for the statement in progress
        (closing a connection under a running statement crashes the interpreter)."""
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"local queue {self.path} cannot be opened: {exc}") from exc
        with self._local.lock:
            if self._closed:
                raise QueueUnavailable(f"local queue {self.path} is closed")
            try:
                yield conn
            except sqlite3.Error as exc:  # locked past the busy timeout, disk full, corrupt file ...
                raise QueueUnavailable(f"local queue {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front so that two
        receivers can never both read a message as visible and both deliver it."""
        with self._write, self._use() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection (waiting for statements in progress); this object's deliveries
        count as orphaned from now on."""
        with _LIVE_LOCK:
            _LIVE_OWNERS.discard(self.owner)
        self._closed = True
        with self._conn_lock:
            for conn, lock in self._connections:
                with lock, contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()

    # -- the port --------------------------------------------------------------------------------

    def send(self, message: JobMessage, *, delay_s: float = 0) -> SendResult:
        now = self._now_us()
        with self._tx() as conn:
            if message.idempotency_key is not None:
                conn.execute("INSERT OR IGNORE INTO idempotency VALUES (?,?,?,?)",
                             (message.function, message.idempotency_key, message.job_id, now))
                (first,) = conn.execute("SELECT job_id FROM idempotency WHERE function = ? AND key = ?",
                                        (message.function, message.idempotency_key)).fetchone()
                if first != message.job_id:
                    return SendResult(first, duplicate=True)
            conn.execute(
                "INSERT INTO jobs (job_id, function, grp, body, state, visible_at_us, enqueued_at_us, updated_at_us) "
                "VALUES (?,?,?,?, 'queued', ?,?,?)",
                (message.job_id, message.function, message.group, message.to_json(),
                 now + int(max(0.0, delay_s) * 1_000_000), message.enqueued_at_us, now))
        return SendResult(message.job_id)

    def receive(self, *, max_messages: int = 10, visibility_timeout_s: float = 30,
                functions: Sequence[str] | None = None) -> list[ReceivedJob]:
        if max_messages <= 0 or (functions is not None and not functions):
            return []
        now = self._now_us()
        function_filter = ""
        params: dict[str, object] = {"now": now, "limit": max_messages * 2 + 8}
        if functions is not None:
            names = [f":f{i}" for i in range(len(functions))]
            function_filter = f"AND function IN ({', '.join(names)})"
            params.update({f"f{i}": name for i, name in enumerate(functions)})
        delivered: list[ReceivedJob] = []
        with self._tx() as conn:
            rows = conn.execute(_READY.format(function_filter=function_filter), params).fetchall()
            for seq, job_id, function, body, receive_count in rows:
                if len(delivered) >= max_messages:
                    break
                if receive_count >= self._max_attempts(function):
                    # The redrive rule: received max_attempts times and never acked (its consumer died).
                    conn.execute(
                        "UPDATE jobs SET state = 'dead', in_flight = 0, receipt = NULL, updated_at_us = ?, "
                        "last_error = CASE WHEN last_error = '' THEN ? ELSE last_error END WHERE seq = ?",
                        (now, f"delivered {receive_count} times without being acknowledged", seq))
                    continue
                receipt = f"{job_id}:{receive_count + 1}:{os.urandom(4).hex()}"
                conn.execute(
                    "UPDATE jobs SET receive_count = receive_count + 1, in_flight = 1, receipt = ?, lease_owner = ?, "
                    "visible_at_us = ?, updated_at_us = ? WHERE seq = ?",
                    (receipt, self.owner, now + int(visibility_timeout_s * 1_000_000), now, seq))
                delivered.append(ReceivedJob(JobMessage.from_json(body), receive_count + 1, receipt))
        return delivered

    def next_visible_in_s(self) -> float | None:
        """When the earliest queued message (a delayed send, a retry's backoff, a lease) comes due."""
        with self._use() as conn:
            row = conn.execute("SELECT MIN(visible_at_us) FROM jobs WHERE state = 'queued'").fetchone()
        if row is None or row[0] is None:
            return None
        return max(0.0, (int(row[0]) - self._now_us()) / 1_000_000)

    def ack(self, job: ReceivedJob) -> None:
        # By job id, not receipt: the function did succeed, even if its lease had expired meanwhile.
        now = self._now_us()
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE jobs SET state = 'done', in_flight = 0, receipt = NULL, updated_at_us = ? "
                "WHERE job_id = ? AND state = 'queued'", (now, job.job_id)).rowcount
            if changed:
                self._count(conn, job.function, "done")

    def is_done(self, job_id: str) -> bool:
        with self._use() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return bool(row and row[0] == "done")

    def change_visibility(self, job: ReceivedJob, timeout_s: float) -> None:
        now = self._now_us()
        with self._tx() as conn:
            self._check(conn.execute(
                "UPDATE jobs SET visible_at_us = ?, updated_at_us = ? WHERE job_id = ? AND receipt = ? "
                "AND state = 'queued'", (now + int(max(0.0, timeout_s) * 1_000_000), now, job.job_id, job.receipt)),
                job, "change visibility")

    def retry_later(self, job: ReceivedJob, delay_s: float, error: str) -> None:
        now = self._now_us()
        with self._tx() as conn:
            if self._check(conn.execute(
                    "UPDATE jobs SET visible_at_us = ?, in_flight = 0, receipt = NULL, last_error = ?, "
                    "updated_at_us = ? WHERE job_id = ? AND receipt = ? AND state = 'queued'",
                    (now + int(max(0.0, delay_s) * 1_000_000), error, now, job.job_id, job.receipt)),
                    job, "retry"):
                self._count(conn, job.function, "failed")

    def dead_letter(self, job: ReceivedJob, error: str) -> None:
        now = self._now_us()
        with self._tx() as conn:
            if self._check(conn.execute(
                    "UPDATE jobs SET state = 'dead', in_flight = 0, receipt = NULL, last_error = ?, updated_at_us = ? "
                    "WHERE job_id = ? AND receipt = ? AND state = 'queued'", (error, now, job.job_id, job.receipt)),
                    job, "dead-letter"):
                self._count(conn, job.function, "failed")

    def release(self, job: ReceivedJob) -> None:
        now = self._now_us()
        with self._tx() as conn:
            self._check(conn.execute(
                "UPDATE jobs SET visible_at_us = ?, in_flight = 0, receipt = NULL, updated_at_us = ?, "
                "receive_count = MAX(receive_count - 1, 0) WHERE job_id = ? AND receipt = ? AND state = 'queued'",
                (now, now, job.job_id, job.receipt)), job, "release")

    def dlq_list(self, *, function: str | None = None, limit: int = 100) -> list[DlqEntry]:
        sql = "SELECT body, receive_count, last_error FROM jobs WHERE state = 'dead'"
        args: list[object] = []
        if function:
            sql += " AND function = ?"
            args.append(function)
        sql += " ORDER BY updated_at_us, seq LIMIT ?"
        args.append(max(1, min(limit, 10_000)))
        entries = []
        with self._use() as conn:
            rows = conn.execute(sql, args).fetchall()
        for body, attempts, last_error in rows:
            message = JobMessage.from_json(body)
            entries.append(DlqEntry(message.job_id, message.function, attempts, last_error, message.trace_id, message))
        return entries

    def dlq_replay(self, dlq_id: str) -> JobMessage:
        now = self._now_us()
        with self._tx() as conn:
            row = conn.execute("SELECT seq, body FROM jobs WHERE job_id = ? AND state = 'dead'", (dlq_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {dlq_id!r} in the dead-letter queue")
            fresh = JobMessage.from_json(row[1]).replayed()
            conn.execute(
                "INSERT INTO jobs (job_id, function, grp, body, state, visible_at_us, enqueued_at_us, updated_at_us) "
                "VALUES (?,?,?,?, 'queued', ?,?,?)",
                (fresh.job_id, fresh.function, fresh.group, fresh.to_json(), now, fresh.enqueued_at_us, now))
            conn.execute("UPDATE jobs SET state = 'replayed', updated_at_us = ? WHERE seq = ?", (now, row[0]))
        return fresh

    def stats(self, functions: Sequence[str] | None = None) -> dict[str, QueueStats]:
        now = self._now_us()
        result: dict[str, QueueStats] = {name: QueueStats() for name in functions or ()}
        with self._use() as conn:
            rows = conn.execute(
                "SELECT function, "
                "SUM(state = 'queued' AND NOT (in_flight = 1 AND visible_at_us > :now)), "
                "SUM(state = 'queued' AND in_flight = 1 AND visible_at_us > :now), "
                "SUM(state = 'dead') FROM jobs GROUP BY function", {"now": now}).fetchall()
            counters = conn.execute("SELECT function, done, failed FROM counters").fetchall()
        for function, pending, in_flight, dead in rows:
            stats = result.setdefault(function, QueueStats())
            stats.pending, stats.in_flight, stats.dlq = int(pending or 0), int(in_flight or 0), int(dead or 0)
        for function, done, failed in counters:
            stats = result.setdefault(function, QueueStats())
            stats.done, stats.failed = int(done), int(failed)
        return dict(sorted(result.items()))

    # -- local maintenance -------------------------------------------------------------------------

    def recover_orphaned_leases(self) -> int:
        """Make deliveries whose owner is gone (its process died, or its queue object was closed)
        visible now. Returns how many. Their receive count stays: the interrupted attempt counts,
        as it would on SQS, so a job that kills its consumer every time still ends in the DLQ."""
        now = self._now_us()
        with _LIVE_LOCK:
            live = set(_LIVE_OWNERS)
        recovered = 0
        with self._tx() as conn:
            rows = conn.execute("SELECT seq, lease_owner FROM jobs WHERE state = 'queued' AND in_flight = 1 "
                                "AND visible_at_us > ?", (now,)).fetchall()
            for seq, owner in rows:
                if owner in live:
                    continue
                pid_text = str(owner or "").split(":", 1)[0]
                pid = int(pid_text) if pid_text.isdigit() else 0
                if pid and pid != os.getpid() and pid_alive(pid):
                    continue
                conn.execute("UPDATE jobs SET visible_at_us = ?, in_flight = 0, receipt = NULL, updated_at_us = ? "
                             "WHERE seq = ?", (now, now, seq))
                recovered += 1
        return recovered

    def prune(self, older_than_s: float) -> int:
        """Delete done and replayed rows older than ``older_than_s`` (their counters stay)."""
        cutoff = self._now_us() - int(older_than_s * 1_000_000)
        with self._tx() as conn:
            return conn.execute("DELETE FROM jobs WHERE state IN ('done', 'replayed') AND updated_at_us < ?",
                                (cutoff,)).rowcount

    @staticmethod
    def _count(conn: sqlite3.Connection, function: str, column: str) -> None:
        conn.execute(f"INSERT INTO counters (function, {column}) VALUES (?, 1) "
                     f"ON CONFLICT(function) DO UPDATE SET {column} = {column} + 1", (function,))

    @staticmethod
    def _check(cursor: sqlite3.Cursor, job: ReceivedJob, what: str) -> bool:
        if cursor.rowcount:
            return True
        _log.warning("queue: could not %s job %s: its delivery %s is no longer current "
                     "(lease expired and it was delivered again, or it was settled already)",
                     what, job.job_id, job.receipt)
        return False
