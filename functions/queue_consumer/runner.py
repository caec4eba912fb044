"""Running one delivery of a job: the attempt span, the invocation and the retry decision.

Shared by the local dispatcher and the SQS consumer so that both tell the same
story in a trace: each attempt is a ``queue`` span named ``async → <fn>`` whose
parent is the enqueue span carried by the message, and the function's own span is
its child. The decision after the attempt:

- success → :meth:`JobQueue.ack` (records "done" by job id, then removes the message);
- failure with attempts left → :meth:`JobQueue.retry_later` after a jittered backoff;
- failure of attempt ``retry.max_attempts`` → :meth:`JobQueue.dead_letter`.

A delivery of a job already marked done (the ack's delete was lost, or SQS delivered
a standard-queue message twice) is acked again without running: a job whose
function succeeded never runs twice. The one window left is a crash after the
function returned and before the ack's first write committed; the job then runs
again (at-least-once, as DESIGN §7 says).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from functions.queue_consumer.backoff import Uniform, retry_delay_s
from functions.queue_consumer.ports import JobQueue, ReceivedJob
from functions.runtime.ports import Invoker
from functions.shared.context import CallContext
from functions.shared.errors import FluxError, ValidationFailed
from functions.shared.spans import SafeSink, Span, SpanSink, now_us, start_span

if TYPE_CHECKING:
    from functions.shared.manifest import Project, Retry

_log = logging.getLogger("flux.queue")

Outcome = Literal["ok", "retry", "dead", "duplicate"]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    job_id: str
    outcome: Outcome
    attempt: int
    error: str = ""
    delay_s: float = 0.0
    span: Span | None = None

    @property
    def failed(self) -> bool:
        return self.outcome in ("retry", "dead")


def describe_error(exc: BaseException) -> str:
    """``<code>: <message>`` for Flux errors; unexpected exceptions keep their type.

    The message is the internal one the runtime recorded (secrets redacted), not the public text an
    HTTP caller gets in AWS ("see the trace"): the DLQ listing is an operator's view, as locally."""
    if isinstance(exc, FluxError):
        return f"{exc.code}: {exc.details.get('message') or exc.message}"
    return f"internal_error: {type(exc).__name__}: {exc}"


async def _settle(operation: Callable[..., Any], *args: Any) -> Any:
    """Run a queue write in a thread and let it finish even if the caller is cancelled: a stop in
    the middle of an ack must not leave the job looking unsettled (or close the file under it)."""
    task = asyncio.ensure_future(asyncio.to_thread(operation, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class JobRunner:
    def __init__(self, queue: JobQueue, invoker: Invoker, project: Project, sink: SpanSink, *,
                 rng: Uniform | None = None, clock_us: Callable[[], int] = now_us) -> None:
        self.queue = queue
        self.invoker = invoker
        self.project = project
        self.sink = sink if isinstance(sink, SafeSink) else SafeSink(sink)
        self.rng = rng
        self.clock_us = clock_us

    def retry_policy(self, function: str) -> Retry:
        spec = self.project.functions.get(function)
        if spec is not None:
            return spec.config.retry
        from functions.shared.manifest import Retry  # only for a job of a function the project no longer has

        return Retry()

    async def run(self, job: ReceivedJob) -> AttemptResult:
        """Run one delivery and settle it with the queue. Never raises for a failed function;
        raises only when the queue itself cannot be updated (the delivery then times out and
        comes back) or when cancelled (the delivery is released first)."""
        message = job.message
        if not self.queue.receive_excludes_done and await _settle(self.queue.is_done, message.job_id):
            await _settle(self.queue.ack, job)
            return AttemptResult(message.job_id, "duplicate", job.receive_count)

        attempt = job.receive_count
        wait_ms = max(0, (self.clock_us() - message.enqueued_at_us) // 1000)
        span = start_span(message.trace_id, message.parent_span_id, "queue", f"async → {message.function}",
                          function=message.function, job_id=message.job_id, attempt=attempt, queue_wait_ms=wait_ms)
        if message.replay_of:
            span.attrs["replay_of"] = message.replay_of
        call = CallContext(trace_id=message.trace_id, parent_span_id=span.span_id, function=message.function,
                           request_id=message.request_id, sink=self.sink)
        try:
            self._check_target(message.function)
            await self.invoker.invoke(message.function, message.payload, call,
                                      span_attrs={"job_id": message.job_id, "attempt": attempt})
        except asyncio.CancelledError:
            finished = span.finish("error", outcome="retry", error="interrupted: the dispatcher stopped; "
                                   "the job will run again")
            self.sink.write_spans([finished])
            try:
                self.queue.release(job)
            except Exception:  # noqa: BLE001 - the lease then expires and the job comes back anyway
                _log.exception("queue: could not release interrupted job %s", message.job_id)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure of user code is a failed attempt
            if not isinstance(exc, FluxError):
                _log.exception("queue: job %s of %s failed unexpectedly", message.job_id, message.function)
            return await self._failed(job, span, describe_error(exc))
        await _settle(self.queue.ack, job)
        finished = span.finish("ok", outcome="ok")
        self.sink.write_spans([finished])
        return AttemptResult(message.job_id, "ok", attempt, span=finished)

    def _check_target(self, function: str) -> None:
        spec = self.project.functions.get(function)
        if spec is None:
            raise ValidationFailed(f"function {function!r} no longer exists in this project")
        if not spec.is_async:
            raise ValidationFailed(f"function {function!r} is no longer async (\"async\": true in its flux.json)")

    async def _failed(self, job: ReceivedJob, span: Any, error: str) -> AttemptResult:
        retry = self.retry_policy(job.function)
        attempt = job.receive_count
        if attempt >= retry.max_attempts:
            finished = span.finish("error", outcome="dead", error=error)
            self.sink.write_spans([finished])
            await _settle(self.queue.dead_letter, job, error)
            return AttemptResult(job.job_id, "dead", attempt, error, span=finished)
        delay = retry_delay_s(retry, attempt, self.rng)
        finished = span.finish("error", outcome="retry", error=error, retry_in_ms=int(delay * 1000))
        self.sink.write_spans([finished])
        await _settle(self.queue.retry_later, job, delay, error)
        return AttemptResult(job.job_id, "retry", attempt, error, delay, span=finished)
