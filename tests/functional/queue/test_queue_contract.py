"""Contract tests of the JobQueue port: the same assertions against SqliteJobQueue and SqsJobQueue (moto).

Timing: visibility and delay are whole seconds on SQS, so the tests that wait use 1 s and let
just over a second pass (``pass_time``: a real sleep for moto, a clock shift for SQLite).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from functions.queue_consumer.errors import JobNotFound
from functions.queue_consumer.message import JobMessage
from functions.queue_consumer.ports import JobQueue

Build = Callable[..., JobMessage]
Wait = Callable[[float], None]


def receive_all(queue: JobQueue, function: str, vt: float = 30, n: int = 10) -> list:
    return queue.receive(max_messages=n, visibility_timeout_s=vt, functions=[function])


def test_body_and_receive_count_travel_intact(queue: JobQueue, message: Build) -> None:
    sent = message(payload={"orderId": 7, "text": "héllo", "items": [1, 2]}, group=None)
    assert queue.send(sent).job_id == sent.job_id
    (got,) = receive_all(queue, "jobs")
    assert got.message == sent
    assert got.receive_count == 1
    assert got.receipt


def test_visibility_timeout_hides_a_delivery_until_it_expires(queue: JobQueue, message: Build, pass_time: Wait) -> None:
    kept, acked = message(), message()
    queue.send(kept)
    queue.send(acked)
    first = receive_all(queue, "jobs", vt=1)
    assert {j.job_id for j in first} == {kept.job_id, acked.job_id}
    assert receive_all(queue, "jobs", vt=1) == []  # hidden while the timeout runs
    queue.ack(next(j for j in first if j.job_id == acked.job_id))
    pass_time(1.15)
    again = receive_all(queue, "jobs", vt=30)
    assert [j.job_id for j in again] == [kept.job_id]  # the acked one never comes back
    assert again[0].receive_count == 2
    assert queue.is_done(acked.job_id) and not queue.is_done(kept.job_id)


def test_change_visibility_zero_makes_it_visible_at_once(queue: JobQueue, message: Build) -> None:
    sent = message()
    queue.send(sent)
    (job,) = receive_all(queue, "jobs")
    queue.change_visibility(job, 0)
    time.sleep(0.01)
    (again,) = receive_all(queue, "jobs")
    assert again.job_id == sent.job_id and again.receive_count == 2


def test_delay_holds_the_first_delivery(queue: JobQueue, message: Build, pass_time: Wait) -> None:
    sent = message()
    queue.send(sent, delay_s=1)
    assert receive_all(queue, "jobs") == []
    pass_time(1.15)
    assert [j.job_id for j in receive_all(queue, "jobs")] == [sent.job_id]


def test_retry_later_redelivers_after_the_delay_and_counts_a_failure(queue: JobQueue, message: Build, pass_time: Wait) -> None:
    sent = message(function="other")
    queue.send(sent)
    (job,) = receive_all(queue, "other")
    queue.retry_later(job, 1, "function_error: boom")
    assert receive_all(queue, "other") == []
    pass_time(1.15)
    (again,) = receive_all(queue, "other")
    assert again.receive_count == 2
    queue.ack(again)
    stats = queue.stats()["other"]
    assert (stats.failed, stats.done, stats.pending, stats.in_flight, stats.dlq) == (1, 1, 0, 0, 0)


def test_redrive_to_dlq_after_max_attempts_with_the_body_intact(queue: JobQueue, message: Build) -> None:
    sent = message(payload={"orderId": 42, "nested": {"a": [1, None, "x"]}})
    queue.send(sent)
    (first,) = receive_all(queue, "jobs")
    queue.retry_later(first, 0, "function_error: try 1")
    time.sleep(0.01)
    (second,) = receive_all(queue, "jobs")
    assert second.receive_count == 2  # max_attempts of "jobs"
    queue.dead_letter(second, "function_error: try 2")
    time.sleep(0.01)
    assert receive_all(queue, "jobs") == []  # on SQS this receive is when the redrive moves it
    (entry,) = queue.dlq_list(function="jobs")
    assert entry.message == sent
    assert (entry.id, entry.function, entry.attempts, entry.trace_id) == (sent.job_id, "jobs", 2, sent.trace_id)
    assert entry.last_error == "function_error: try 2"
    assert queue.stats()["jobs"].dlq == 1
    assert queue.dlq_list(function="other") == []


def test_a_consumer_that_never_acks_also_ends_in_the_dlq(queue: JobQueue, message: Build) -> None:
    sent = message()
    queue.send(sent)
    for attempt in (1, 2):
        (job,) = receive_all(queue, "jobs")
        assert job.receive_count == attempt
        queue.change_visibility(job, 0)  # as if its lease expired
        time.sleep(0.01)
    assert receive_all(queue, "jobs") == []
    assert [e.id for e in queue.dlq_list()] == [sent.job_id]


def test_dlq_replay_reenqueues_in_the_original_trace(queue: JobQueue, message: Build) -> None:
    sent = message(idempotency_key="k-1")
    queue.send(sent)
    for _ in range(2):
        (job,) = receive_all(queue, "jobs")
        queue.retry_later(job, 0, "boom") if job.receive_count == 1 else queue.dead_letter(job, "boom")
        time.sleep(0.01)
    receive_all(queue, "jobs")
    fresh = queue.dlq_replay(sent.job_id)
    assert (fresh.trace_id, fresh.parent_span_id, fresh.replay_of, fresh.payload) == \
        (sent.trace_id, sent.parent_span_id, sent.job_id, sent.payload)
    assert fresh.job_id != sent.job_id and fresh.idempotency_key is None
    assert queue.dlq_list() == []
    (again,) = receive_all(queue, "jobs")
    assert again.message == fresh and again.receive_count == 1
    with pytest.raises(JobNotFound):
        queue.dlq_replay(sent.job_id)


def test_fifo_group_is_blocked_while_its_message_is_in_flight(queue: JobQueue, message: Build) -> None:
    a1, a2, b1 = (message(function="ordered", group=g, payload={"n": i}) for i, g in enumerate("AAB"))
    for m in (a1, a2, b1):
        queue.send(m)
    (head,) = receive_all(queue, "ordered", n=1)
    assert head.job_id == a1.job_id
    rest = receive_all(queue, "ordered")
    assert [j.job_id for j in rest] == [b1.job_id]  # a2 waits behind a1
    queue.retry_later(head, 0, "boom")  # a failed head stays first in its group
    time.sleep(0.01)
    (retried,) = receive_all(queue, "ordered", n=1)
    assert (retried.job_id, retried.receive_count) == (a1.job_id, 2)
    assert receive_all(queue, "ordered") == []  # a1 in flight again, b1 in flight
    queue.ack(retried)
    (next_in_a,) = receive_all(queue, "ordered")
    assert next_in_a.job_id == a2.job_id


def test_idempotent_enqueue_returns_the_first_job_and_enqueues_nothing(queue: JobQueue, message: Build) -> None:
    first = message(idempotency_key="order-7")
    repeat = message(idempotency_key="order-7")
    other_function = message(function="other", idempotency_key="order-7")
    assert queue.send(first).duplicate is False
    result = queue.send(repeat)
    assert (result.job_id, result.duplicate) == (first.job_id, True)
    assert queue.send(other_function).job_id == other_function.job_id  # keys are per function
    assert [j.job_id for j in receive_all(queue, "jobs")] == [first.job_id]
    assert queue.stats()["jobs"].in_flight == 1


def test_stats_count_pending_in_flight_done_failed_and_dlq(queue: JobQueue, message: Build) -> None:
    for _ in range(3):
        queue.send(message(function="other"))
    jobs = receive_all(queue, "other", n=2)
    queue.ack(jobs[0])
    stats = queue.stats(["never_used"])
    assert stats["other"].to_dict() == {"pending": 1, "in_flight": 1, "done": 1, "failed": 0, "dlq": 0}
    assert stats["never_used"].to_dict() == {"pending": 0, "in_flight": 0, "done": 0, "failed": 0, "dlq": 0}


def test_release_gives_the_delivery_back_at_once(queue: JobQueue, message: Build) -> None:
    sent = message()
    queue.send(sent)
    (job,) = receive_all(queue, "jobs")
    queue.release(job)
    time.sleep(0.01)
    assert [j.job_id for j in receive_all(queue, "jobs")] == [sent.job_id]
