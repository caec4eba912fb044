"""The SQS consumer's partial batch response, and the Lambda entry wired with fakes."""

from __future__ import annotations

import asyncio
from typing import Any

from queue_fakes import FakeQueue, ScriptedInvoker, job_message, make_project, sqs_event

from functions.aws import entry_worker as lambda_entry
from functions.aws import runtime_state
from functions.queue_consumer.consumer import BatchConsumer, SqsRecord, queue_url_from_arn
from functions.queue_consumer.runner import JobRunner
from functions.runtime.host import Services
from functions.shared.spans import MemorySink

FUNCTIONS = {
    "send_invoice": {"async": True, "retry": {"max_attempts": 3, "base_ms": 100}},
    "ship_order": {"async": True, "ordering": {"group_by": "customer"}},
}
PROJECT = make_project(FUNCTIONS)


def consumer(queue: FakeQueue, invoker: ScriptedInvoker, sink: MemorySink | None = None) -> BatchConsumer:
    return BatchConsumer(JobRunner(queue, invoker, PROJECT, sink or MemorySink()))


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def test_one_poisoned_record_of_ten_reports_exactly_that_record(fake_queue: FakeQueue) -> None:
    messages = [job_message(payload={"i": i}) for i in range(10)]
    event = sqs_event(messages)
    invoker = ScriptedInvoker(lambda payload: payload["i"] == 6)
    response = asyncio.run(consumer(fake_queue, invoker).process(event))
    assert failures(response) == [event["Records"][6]["messageId"]]
    assert len(invoker.calls) == 10
    assert fake_queue.kinds(messages[6].job_id) == ["retry_later"]
    assert all(fake_queue.kinds(m.job_id) == ["ack"] for i, m in enumerate(messages) if i != 6)


def test_all_failing_reports_every_record_so_the_batch_fails(fake_queue: FakeQueue) -> None:
    event = sqs_event([job_message() for _ in range(5)])
    response = asyncio.run(consumer(fake_queue, ScriptedInvoker(lambda _p: True)).process(event))
    assert failures(response) == [r["messageId"] for r in event["Records"]]


def test_all_succeeding_reports_nothing(fake_queue: FakeQueue) -> None:
    response = asyncio.run(consumer(fake_queue, ScriptedInvoker()).process(sqs_event([job_message()] * 3)))
    assert response == {"batchItemFailures": []}


def test_fifo_stops_a_group_at_its_first_failure(fake_queue: FakeQueue) -> None:
    groups = ["a", "b", "a", "a", "b"]
    messages = [job_message("ship_order", payload={"customer": g, "i": i}, group=g) for i, g in enumerate(groups)]
    event = sqs_event(messages, fifo=True, groups=groups)
    invoker = ScriptedInvoker(lambda payload: payload["i"] == 2)  # a's second record fails
    response = asyncio.run(consumer(fake_queue, invoker).process(event))
    ids = [r["messageId"] for r in event["Records"]]
    assert failures(response) == [ids[2], ids[3]]
    assert [call[1]["i"] for call in invoker.calls] == [0, 1, 2, 4]  # record 3 never ran
    assert fake_queue.kinds(messages[3].job_id) == ["release"]  # skipped: visible again, group stays in order
    assert fake_queue.kinds(messages[4].job_id) == ["ack"]


def test_a_standard_queue_does_not_stop_anything_after_a_failure(fake_queue: FakeQueue) -> None:
    messages = [job_message(payload={"i": i}) for i in range(3)]
    event = sqs_event(messages)  # no group semantics even if bodies carried one
    response = asyncio.run(consumer(fake_queue, ScriptedInvoker(lambda p: p["i"] == 0)).process(event))
    assert failures(response) == [event["Records"][0]["messageId"]]


def test_malformed_body_is_reported_and_nothing_runs(fake_queue: FakeQueue) -> None:
    invoker = ScriptedInvoker()
    event = sqs_event(["not json", '{"job_id": "x"}', job_message()])
    response = asyncio.run(consumer(fake_queue, invoker).process(event))
    assert failures(response) == [event["Records"][0]["messageId"], event["Records"][1]["messageId"]]
    assert len(invoker.calls) == 1


def test_redelivery_of_a_done_job_is_not_run_and_not_reported(fake_queue: FakeQueue) -> None:
    message = job_message()
    fake_queue.done.add(message.job_id)
    invoker = ScriptedInvoker()
    response = asyncio.run(consumer(fake_queue, invoker).process(sqs_event([message], receive_count=2)))
    assert response == {"batchItemFailures": []}
    assert invoker.calls == []


def test_the_last_attempt_is_dead_lettered_and_reported(fake_queue: FakeQueue) -> None:
    message = job_message()
    event = sqs_event([message], receive_count=3)
    response = asyncio.run(consumer(fake_queue, ScriptedInvoker(lambda _p: True)).process(event))
    assert failures(response) == [event["Records"][0]["messageId"]]
    assert fake_queue.kinds(message.job_id) == ["dead_letter"]


def test_a_queue_outage_while_settling_reports_the_record(fake_queue: FakeQueue) -> None:
    def broken_ack(job: Any) -> None:
        raise RuntimeError("dynamodb down")
    fake_queue.ack = broken_ack  # type: ignore[method-assign]
    event = sqs_event([job_message()])
    response = asyncio.run(consumer(fake_queue, ScriptedInvoker()).process(event))
    assert failures(response) == [event["Records"][0]["messageId"]]


def test_records_are_read_as_typed_views() -> None:
    event = sqs_event([job_message("ship_order", group="g")], fifo=True, groups=["g"], receive_count=4)
    record = SqsRecord.from_event(event["Records"][0])
    assert (record.fifo, record.group_id, record.receive_count) == (True, "g", 4)
    assert queue_url_from_arn(record.source_arn) == "https://sqs.us-east-1.amazonaws.com/123456789012/flux-ship_order.fifo"


def test_lambda_entry_uses_the_injected_dependencies_and_flushes_the_sink(fake_queue: FakeQueue) -> None:
    class CountingSink(MemorySink):
        flushed = 0

        def flush(self) -> None:
            self.flushed += 1

    sink = CountingSink()
    invoker = ScriptedInvoker(lambda p: p.get("bad", False))
    loop = asyncio.new_event_loop()
    runtime_state.install("worker", runtime_state.RuntimeState(PROJECT, invoker, None, sink,  # type: ignore[arg-type]
                                                                Services(), loop))
    lambda_entry.reset(consumer(fake_queue, invoker, sink))
    try:
        event = sqs_event([job_message(payload={"bad": True}), job_message()])
        assert failures(lambda_entry.handler(event, None)) == [event["Records"][0]["messageId"]]
        assert failures(lambda_entry.handler(sqs_event([job_message()]), None)) == []
    finally:
        lambda_entry.reset()
        runtime_state._states.clear()
        loop.close()
    assert sink.flushed == 2
    assert [s.attrs["outcome"] for s in sink.spans if s.kind == "queue"] == ["retry", "ok", "ok"]
