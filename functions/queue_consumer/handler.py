"""Lambda entry point of an async function's queue: ``functions.queue_consumer.handler.handler``.

Each async function's Lambda consumes its own SQS queue with this handler (event
source mapping with ``ReportBatchItemFailures``). Its dependencies are built once
per container by a factory: by default from the runtime
(:func:`functions.runtime.lambda_runtime.get_invoker`, ``get_sink``, ``get_project``,
``get_loop``) and :meth:`SqsJobQueue.from_env`; tests install their own with :func:`configure`.

Batches run on the container's one event loop, so warm resources the invoker
keeps (the Deno worker and its pipes) stay bound to the loop that created them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from functions.queue_consumer.consumer import BatchConsumer
from functions.queue_consumer.runner import JobRunner
from functions.queue_consumer.sqs_queue import SqsJobQueue
from functions.shared.spans import SpanSink


@dataclass(frozen=True, slots=True)
class ConsumerDeps:
    consumer: BatchConsumer
    sink: SpanSink
    #: The container's event loop; None: this module keeps its own.
    loop: Callable[[], asyncio.AbstractEventLoop] | None = None


def default_dependencies() -> ConsumerDeps:
    from functions.runtime import lambda_runtime  # the runtime Lambda's warm invoker, sink, project and loop

    queue = SqsJobQueue.from_env()
    sink = lambda_runtime.get_sink()
    runner = JobRunner(queue, lambda_runtime.get_invoker(), lambda_runtime.get_project(), sink)
    return ConsumerDeps(BatchConsumer(runner, queue.queue_urls), sink, lambda_runtime.get_loop)


_factory: Callable[[], ConsumerDeps] = default_dependencies
_deps: ConsumerDeps | None = None
_loop: asyncio.AbstractEventLoop | None = None


def configure(factory: Callable[[], ConsumerDeps]) -> None:
    """Replace how dependencies are built (tests, other hosts); the next event builds them anew."""
    global _factory, _deps
    _factory, _deps = factory, None


def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    global _deps, _loop
    if _deps is None:
        _deps = _factory()
    if _deps.loop is not None:
        loop = _deps.loop()
    else:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
        loop = _loop
    try:
        return loop.run_until_complete(_deps.consumer.process(event))
    finally:
        _deps.sink.flush()  # the container may be frozen right after we return
