"""EnqueueService: validation of ctx.queue.push, the enqueue span, and the message it sends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from queue_fakes import FakeQueue, make_project

from functions.queue_consumer.errors import QueueUnavailable
from functions.queue_consumer.service import EnqueueService
from functions.shared.context import CallContext
from functions.shared.errors import PayloadTooLarge, ValidationFailed
from functions.shared.spans import MemorySink

PROJECT = make_project({
    "create_order": {"route": "/orders"},
    "send_invoice": {"async": True},
    "ship_order": {"async": True, "ordering": {"group_by": "customer"}},
})
TRACE = "ab" * 16


def push(queue: FakeQueue, function: str, payload: Any, options: Any = None, *,
         sink: MemorySink | None = None, woken: list[int] | None = None) -> dict[str, Any]:
    service = EnqueueService(queue, PROJECT, on_enqueued=(lambda: woken.append(1)) if woken is not None else None)
    call = CallContext(TRACE, "1234567890abcdef", function="create_order", request_id=TRACE,
                       sink=sink or MemorySink())
    return asyncio.run(service.push(function, payload, options, call))


def test_push_sends_a_message_in_the_callers_trace_under_the_enqueue_span(fake_queue: FakeQueue) -> None:
    sink, woken = MemorySink(), []
    result = push(fake_queue, "send_invoice", {"orderId": 3}, {"delay_s": 5}, sink=sink, woken=woken)
    ((message, delay),) = fake_queue.sent
    (span,) = sink.spans
    assert result == {"job_id": message.job_id}
    assert (span.kind, span.name, span.trace_id, span.parent_span_id) == \
        ("queue", "enqueue send_invoice", TRACE, "1234567890abcdef")
    assert span.attrs == {"function": "create_order", "queue.function": "send_invoice", "job_id": message.job_id,
                          "queue.delay_s": 5.0}
    assert (message.trace_id, message.parent_span_id, message.request_id, message.payload, delay) == \
        (TRACE, span.span_id, TRACE, {"orderId": 3}, 5.0)
    assert message.enqueued_at_us > 0 and message.group is None and message.replay_of is None
    assert woken == [1]


def test_an_idempotency_key_seen_before_returns_the_first_job(fake_queue: FakeQueue) -> None:
    sink, woken = MemorySink(), []
    first = push(fake_queue, "send_invoice", {}, {"idempotency_key": "order-1"}, woken=woken)
    again = push(fake_queue, "send_invoice", {}, {"idempotency_key": "order-1"}, sink=sink, woken=woken)
    assert first == again and len(fake_queue.sent) == 1
    assert sink.spans[0].attrs["queue.duplicate"] is True
    assert woken == [1]  # nothing new to run the second time


def test_ordered_functions_take_their_group_from_the_payload(fake_queue: FakeQueue) -> None:
    push(fake_queue, "ship_order", {"customer": 42})
    push(fake_queue, "ship_order", {"customer": 42}, {"group": "vip"})
    assert [m.group for m, _ in fake_queue.sent] == ["42", "vip"]


@pytest.mark.parametrize(("function", "payload", "options", "words"), [
    ("nope", {}, None, "no function named 'nope'"),
    ("create_order", {}, None, "is not async"),
    ("send_invoice", {}, {"delay": 1}, "unknown option(s) delay"),
    ("send_invoice", {}, {"delay_s": 901}, "delay_s must be"),
    ("send_invoice", {}, {"delay_s": -1}, "delay_s must be"),
    ("send_invoice", {}, {"delay_s": True}, "delay_s must be"),
    ("send_invoice", {}, {"idempotency_key": "k" * 129}, "idempotency_key must be"),
    ("send_invoice", {}, {"idempotency_key": 7}, "idempotency_key must be"),
    ("send_invoice", {}, {"group": "g"}, "group applies only"),
    ("ship_order", {"other": 1}, None, "ordered by 'customer'"),
    ("ship_order", {"customer": 1}, {"delay_s": 3}, "cannot be delayed"),
    ("ship_order", {"customer": {"id": 1}}, None, "group must be a string or a number"),
    ("send_invoice", {}, "fast", "options must be an object"),
    ("send_invoice", {1, 2}, None, "payload must be JSON"),
])
def test_bad_pushes_are_validation_errors_and_enqueue_nothing(fake_queue: FakeQueue, function: str, payload: Any,
                                                              options: Any, words: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        push(fake_queue, function, payload, options)
    assert words in err.value.message
    assert fake_queue.sent == []


def test_a_payload_over_the_sqs_limit_is_refused(fake_queue: FakeQueue) -> None:
    with pytest.raises(PayloadTooLarge):
        push(fake_queue, "send_invoice", {"blob": "x" * 300_000})


def test_a_queue_outage_is_raised_and_recorded_on_the_enqueue_span(fake_queue: FakeQueue) -> None:
    fake_queue.fail_sends = True
    sink = MemorySink()
    with pytest.raises(QueueUnavailable):
        push(fake_queue, "send_invoice", {}, sink=sink)
    assert sink.spans[0].status == "error" and sink.spans[0].attrs["error"].startswith("queue_unavailable")
