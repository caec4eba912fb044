"""What only the SQLite queue does: safe sharing across threads/objects, lease recovery, release, pruning."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from functions.queue_consumer.errors import QueueUnavailable
from functions.queue_consumer.message import JobMessage
from functions.queue_consumer.sqlite_queue import SqliteJobQueue


def test_concurrent_receivers_on_one_file_deliver_each_message_once(tmp_path: Path,
                                                                    message: Callable[..., JobMessage]) -> None:
    path = tmp_path / "queue.db"
    sender = SqliteJobQueue(path)
    sent = [message() for _ in range(200)]
    for m in sent:
        sender.send(m)
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def consume() -> None:
        queue = SqliteJobQueue(path)  # one object per worker, like separate processes
        while True:
            jobs = queue.receive(max_messages=3, visibility_timeout_s=60)
            if not jobs:
                break
            for job in jobs:
                with lock:
                    seen[job.job_id] += 1
                queue.ack(job)
        queue.close()

    workers = [threading.Thread(target=consume) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert seen == Counter({m.job_id: 1 for m in sent})
    assert sender.stats()["jobs"].done == 200


def test_writers_of_one_process_take_turns_instead_of_meeting_the_busy_timeout(
        tmp_path: Path, message: Callable[..., JobMessage]) -> None:
    """Pushes from many requests and the dispatcher write at once under flux dev. Threads of one process
    queue for the file's write lock in Python, so none waits in SQLite's sleeping busy handler (which made
    a push take over a second); with no busy timeout at all, not one write is refused."""
    path = tmp_path / "queue.db"
    queues = [SqliteJobQueue(path, busy_timeout_s=0) for _ in range(2)]   # two objects, one file, like flux dev
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def push(queue: SqliteJobQueue) -> None:
        start.wait()
        for _ in range(40):
            try:
                queue.send(message())
                for job in queue.receive(max_messages=1, visibility_timeout_s=60):
                    queue.ack(job)
            except QueueUnavailable as exc:
                failures.append(exc)

    threads = [threading.Thread(target=push, args=(queues[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    jobs = queues[0].stats()["jobs"]
    assert jobs.done + jobs.pending == 320 and jobs.done > 0


def test_deliveries_of_a_dead_process_are_recovered_and_live_ones_are_not(tmp_path: Path,
                                                                         message: Callable[..., JobMessage]) -> None:
    queue = SqliteJobQueue(tmp_path / "queue.db")
    dead, live = message(), message()
    queue.send(dead)
    queue.send(live)
    queue.receive(max_messages=2, visibility_timeout_s=600)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with sqlite3.connect(queue.path) as conn:
        conn.execute("UPDATE jobs SET lease_owner = ? WHERE job_id = ?", (f"{gone.stdout.strip()}:abc", dead.job_id))
    assert queue.recover_orphaned_leases() == 1
    (again,) = queue.receive(max_messages=10, visibility_timeout_s=600)
    assert again.job_id == dead.job_id and again.receive_count == 2


def test_release_does_not_count_the_interrupted_attempt(tmp_path: Path, message: Callable[..., JobMessage]) -> None:
    queue = SqliteJobQueue(tmp_path / "queue.db", max_attempts=1)
    queue.send(message())
    (job,) = queue.receive(visibility_timeout_s=60)
    queue.release(job)
    (again,) = queue.receive(visibility_timeout_s=60)  # with max_attempts 1 a counted attempt would dead-letter it
    assert again.receive_count == 1


def test_settling_with_an_old_receipt_changes_nothing(tmp_path: Path, message: Callable[..., JobMessage]) -> None:
    queue = SqliteJobQueue(tmp_path / "queue.db", max_attempts=5)
    queue.send(message())
    (old,) = queue.receive(visibility_timeout_s=60)
    queue.change_visibility(old, 0)
    (current,) = queue.receive(visibility_timeout_s=60)
    queue.dead_letter(old, "late report from the first delivery")
    assert queue.dlq_list() == [] and queue.stats()["jobs"].in_flight == 1
    queue.ack(current)
    assert queue.is_done(current.job_id)


def test_prune_removes_old_done_rows_but_keeps_the_counters(tmp_path: Path,
                                                            message: Callable[..., JobMessage]) -> None:
    now = [1_000.0]
    queue = SqliteJobQueue(tmp_path / "queue.db", clock=lambda: now[0])
    queue.send(message())
    queue.send(message())
    first, _second = queue.receive(visibility_timeout_s=60)
    queue.ack(first)
    now[0] += 8 * 86_400
    assert queue.prune(7 * 86_400) == 1
    stats = queue.stats()["jobs"]
    assert (stats.done, stats.pending) == (1, 1)  # the in-flight one's lease expired long ago


def test_a_locked_file_is_a_queue_unavailable_error(tmp_path: Path, message: Callable[..., JobMessage]) -> None:
    queue = SqliteJobQueue(tmp_path / "queue.db", busy_timeout_s=0.05)
    blocker = sqlite3.connect(queue.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(QueueUnavailable):
            queue.send(message())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    queue.send(message())  # usable again once the lock is gone
    assert queue.stats()["jobs"].pending == 1
