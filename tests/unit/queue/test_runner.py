"""JobRunner: the attempt span's place in the trace, and the ack / retry / dead decision."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from queue_fakes import FakeQueue, ScriptedInvoker, job_message, make_project

from functions.queue_consumer.ports import ReceivedJob
from functions.queue_consumer.runner import JobRunner
from functions.shared.context import CallContext
from functions.shared.spans import MemorySink

PROJECT = make_project({
    "send_invoice": {"async": True, "retry": {"max_attempts": 3, "backoff": "exponential", "base_ms": 1000}},
    "sync_fn": {},
})


class Highest:
    """A jitter source that always draws the upper bound, so delays are predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


def run(queue: FakeQueue, invoker: Any, job: ReceivedJob, sink: MemorySink) -> Any:
    runner = JobRunner(queue, invoker, PROJECT, sink, rng=Highest(), clock_us=lambda: 1_250_000)
    return asyncio.run(runner.run(job))


def test_success_acks_and_the_function_runs_as_a_child_of_the_attempt_span(fake_queue: FakeQueue) -> None:
    message = job_message(enqueued_at_us=1_000_000)
    invoker, sink = ScriptedInvoker(), MemorySink()
    result = run(fake_queue, invoker, ReceivedJob(message, 1, "r1"), sink)
    assert result.outcome == "ok"
    assert fake_queue.kinds(message.job_id) == ["ack"]
    (span,) = sink.spans
    assert (span.kind, span.name, span.trace_id, span.parent_span_id, span.status) == \
        ("queue", "async → send_invoice", message.trace_id, message.parent_span_id, "ok")
    assert span.attrs == {"function": "send_invoice", "job_id": message.job_id, "attempt": 1,
                          "queue_wait_ms": 250, "outcome": "ok"}
    function, payload, call, span_attrs = invoker.calls[0]
    assert isinstance(call, CallContext)
    assert (function, payload) == ("send_invoice", message.payload)
    assert (call.trace_id, call.parent_span_id, call.function, call.request_id) == \
        (message.trace_id, span.span_id, "send_invoice", "req")
    assert span_attrs == {"job_id": message.job_id, "attempt": 1}


def test_failure_with_attempts_left_backs_off_exponentially(fake_queue: FakeQueue) -> None:
    message = job_message()
    sink = MemorySink()
    result = run(fake_queue, ScriptedInvoker(lambda _p: True), ReceivedJob(message, 2, "r2"), sink)
    assert (result.outcome, result.delay_s) == ("retry", 2.0)  # base 1 s * 2 ** (2 - 1), jitter at its top
    ((kind, _job, (delay, error)),) = fake_queue.calls
    assert kind == "retry_later" and delay == 2.0
    assert error.startswith("function_error: send_invoice failed")
    (span,) = sink.spans
    assert (span.status, span.attrs["outcome"], span.attrs["attempt"], span.attrs["retry_in_ms"]) == \
        ("error", "retry", 2, 2000)
    assert span.attrs["error"] == error


def test_failure_of_the_last_attempt_dead_letters(fake_queue: FakeQueue) -> None:
    message = job_message()
    sink = MemorySink()
    result = run(fake_queue, ScriptedInvoker(lambda _p: True), ReceivedJob(message, 3, "r3"), sink)
    assert result.outcome == "dead"
    assert fake_queue.kinds(message.job_id) == ["dead_letter"]
    assert sink.spans[0].attrs["outcome"] == "dead"


def test_a_job_already_done_is_acked_without_running(fake_queue: FakeQueue) -> None:
    message = job_message()
    fake_queue.done.add(message.job_id)
    invoker, sink = ScriptedInvoker(), MemorySink()
    result = run(fake_queue, invoker, ReceivedJob(message, 2, "r2"), sink)
    assert result.outcome == "duplicate"
    assert invoker.calls == [] and sink.spans == []
    assert fake_queue.kinds(message.job_id) == ["ack"]


@pytest.mark.parametrize("function", ["deleted_fn", "sync_fn"])
def test_a_job_for_a_function_that_is_gone_or_not_async_fails(fake_queue: FakeQueue, function: str) -> None:
    invoker = ScriptedInvoker()
    result = run(fake_queue, invoker, ReceivedJob(job_message(function), 1, "r"), MemorySink())
    assert result.outcome == "retry" and result.error.startswith("validation_failed:")
    assert invoker.calls == []


def test_an_unexpected_exception_is_a_failed_attempt_not_a_crash(fake_queue: FakeQueue) -> None:
    class Broken:
        async def invoke(self, *args: Any, **kwargs: Any) -> Any:
            raise KeyError("bug")

    result = run(fake_queue, Broken(), ReceivedJob(job_message(), 1, "r"), MemorySink())
    assert result.outcome == "retry" and result.error == "internal_error: KeyError: 'bug'"


def test_cancellation_releases_the_delivery_and_records_the_interruption(fake_queue: FakeQueue) -> None:
    class Slow:
        async def invoke(self, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(10)

    message, sink = job_message(), MemorySink()

    async def scenario() -> None:
        runner = JobRunner(fake_queue, Slow(), PROJECT, sink)
        task = asyncio.create_task(runner.run(ReceivedJob(message, 1, "r")))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert fake_queue.kinds(message.job_id) == ["release"]
    assert sink.spans[0].attrs["outcome"] == "retry" and "interrupted" in sink.spans[0].attrs["error"]


def test_a_replayed_job_says_what_it_replays(fake_queue: FakeQueue) -> None:
    sink = MemorySink()
    run(fake_queue, ScriptedInvoker(), ReceivedJob(job_message(replay_of="old-job"), 1, "r"), sink)
    assert sink.spans[0].attrs["replay_of"] == "old-job"


def test_a_failing_span_sink_does_not_fail_the_job(fake_queue: FakeQueue) -> None:
    class Down(MemorySink):
        def write_spans(self, spans: Any) -> None:
            raise OSError("disk full")

    result = run(fake_queue, ScriptedInvoker(), ReceivedJob(job_message(), 1, "r"), Down())
    assert result.outcome == "ok"
