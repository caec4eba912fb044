"""Lambda entry of an async function's worker: SQS batches of its own queue, partial batch responses.

The event source mapping has ``ReportBatchItemFailures``; the consumer answers
``{"batchItemFailures": [...]}`` naming only the records to redeliver. The batch
runs on the container's one event loop with the runtime's warm Deno worker
(:mod:`functions.aws.runtime_state`, role ``worker``).
"""

from __future__ import annotations

from typing import Any

from functions.aws import runtime_state
from functions.aws.queue import sqs_job_queue
from functions.queue_consumer.consumer import BatchConsumer
from functions.queue_consumer.runner import JobRunner

_consumer: BatchConsumer | None = None
runtime_state.prepare("worker")  # INIT: project, span sink, queue; Deno starts with the first batch


def consumer(state: runtime_state.RuntimeState) -> BatchConsumer:
    global _consumer
    if _consumer is None:
        queue = sqs_job_queue()
        _consumer = BatchConsumer(JobRunner(queue, state.runtime, state.project, state.sink), queue.queue_urls)
    return _consumer


def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    state = None
    try:
        state = runtime_state.state("worker")
        return state.run(consumer(state).process(event))
    finally:
        runtime_state.finish(state, context)  # spans: written after the response, before any freeze


def reset(replacement: BatchConsumer | None = None) -> None:
    """Forget the consumer, or use ``replacement`` instead (tests drive the entry with fakes)."""
    global _consumer
    _consumer = replacement
