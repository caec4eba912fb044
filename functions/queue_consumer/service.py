"""``ctx.queue.push`` and HTTP calls to ``"async": true`` functions: validate, trace, enqueue.

The enqueue span (kind ``queue``, name ``enqueue <fn>``) is the link between the
request and its background work: its id travels in the message as
``parent_span_id``, so every attempt span hangs under it in the same trace.

Options (all optional):

- ``delay_s``: 0..900 seconds before the first attempt (SQS's limit). Refused for
  functions with ``ordering``: their FIFO queues cannot delay one message.
- ``idempotency_key``: up to 128 characters; a key seen before for the same
  function returns the first job's id and enqueues nothing.
- ``group``: the FIFO group of a function with ``ordering``; by default the value of
  the payload field named by ``ordering.group_by`` (which must then be present).
  Refused for functions without ``ordering``, where it would silently mean nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from functions.queue_consumer.message import MAX_BODY_BYTES, JobMessage, new_job_id
from functions.queue_consumer.ports import JobQueue
from functions.shared.context import CallContext
from functions.shared.errors import FluxError, PayloadTooLarge, ValidationFailed
from functions.shared.spans import SafeSink, now_us, start_span

if TYPE_CHECKING:
    from functions.shared.manifest import FunctionSpec, Project

MAX_DELAY_S = 900
MAX_KEY_CHARS = 128
_OPTIONS = frozenset({"delay_s", "idempotency_key", "group"})


class EnqueueService:
    """Implements :class:`functions.runtime.ports.QueueService`.

    ``on_enqueued`` is called after each message that was really sent (not for a
    duplicate); ``flux dev`` passes :meth:`LocalDispatcher.wake` so a job starts
    without waiting for the next poll.
    """

    def __init__(self, queue: JobQueue, project: Project, *,
                 on_enqueued: Callable[[], None] | None = None) -> None:
        self.queue = queue
        self.project = project
        self.on_enqueued = on_enqueued

    async def push(self, function: str, payload: Any, options: dict[str, Any] | None,
                   call: CallContext) -> dict[str, Any]:
        spec = self._target(function)
        delay_s, key, group = self._options(spec, payload, options)
        span = start_span(call.trace_id, call.parent_span_id, "queue", f"enqueue {function}",
                          function=call.function, **{"queue.function": function})
        message = JobMessage(job_id=new_job_id(), function=function, payload=payload, trace_id=call.trace_id,
                             parent_span_id=span.span_id, request_id=call.request_id or call.trace_id,
                             enqueued_at_us=now_us(), group=group, idempotency_key=key)
        try:
            body = message.to_json()
        except (TypeError, ValueError) as exc:
            raise ValidationFailed(f"ctx.queue.push: the payload must be JSON ({exc})") from None
        if len(body.encode("utf-8")) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the job for {function!r} is {len(body.encode('utf-8'))} bytes; "
                                  f"queue messages are limited to {MAX_BODY_BYTES} bytes")
        sink = SafeSink(call.sink)
        try:
            result = await asyncio.to_thread(self.queue.send, message, delay_s=delay_s)
        except FluxError as exc:
            sink.write_spans([span.finish("error", job_id=message.job_id, error=f"{exc.code}: {exc.message}")])
            raise
        attrs: dict[str, Any] = {"job_id": result.job_id}
        if result.duplicate:
            attrs["queue.duplicate"] = True
        if delay_s:
            attrs["queue.delay_s"] = delay_s
        if group is not None:
            attrs["queue.group"] = group
        sink.write_spans([span.finish("ok", **attrs)])
        if not result.duplicate and self.on_enqueued is not None:
            self.on_enqueued()
        return {"job_id": result.job_id}

    def _target(self, function: Any) -> FunctionSpec:
        if not isinstance(function, str) or not function:
            raise ValidationFailed("ctx.queue.push: the first argument must be a function name")
        spec = self.project.functions.get(function)
        if spec is None:
            known = ", ".join(sorted(n for n, s in self.project.functions.items() if s.is_async)) or "none"
            raise ValidationFailed(f"ctx.queue.push: there is no function named {function!r} "
                                   f"(async functions: {known})")
        if not spec.is_async:
            raise ValidationFailed(f"ctx.queue.push: function {function!r} is not async; set \"async\": true in "
                                   f"its flux.json to run it from the queue")
        return spec

    @staticmethod
    def _options(spec: FunctionSpec, payload: Any, options: dict[str, Any] | None
                 ) -> tuple[float, str | None, str | None]:
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise ValidationFailed("ctx.queue.push: options must be an object {delay_s?, idempotency_key?, group?}")
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ValidationFailed(f"ctx.queue.push: unknown option(s) {', '.join(unknown)} "
                                   f"(allowed: delay_s, idempotency_key, group)")
        delay = options.get("delay_s")
        if delay is None:
            delay_s = 0.0
        elif isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) \
                or not 0 <= delay <= MAX_DELAY_S:
            raise ValidationFailed(f"ctx.queue.push: delay_s must be a number of seconds from 0 to {MAX_DELAY_S}")
        else:
            delay_s = float(delay)
        key = options.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS):
            raise ValidationFailed(f"ctx.queue.push: idempotency_key must be a string of 1 to {MAX_KEY_CHARS} "
                                   f"characters")
        group = EnqueueService._group(spec, payload, options.get("group"))
        if group is not None and delay_s > 0:
            raise ValidationFailed(f"ctx.queue.push: {spec.name!r} is ordered (FIFO per group) and ordered jobs "
                                   f"cannot be delayed; drop delay_s")
        return delay_s, key, group

    @staticmethod
    def _group(spec: FunctionSpec, payload: Any, given: Any) -> str | None:
        ordering = spec.config.ordering
        if ordering is None:
            if given is not None:
                raise ValidationFailed(f"ctx.queue.push: group applies only to functions with \"ordering\"; "
                                       f"{spec.name!r} has none")
            return None
        value = given
        if value is None:
            value = payload.get(ordering.group_by) if isinstance(payload, dict) else None
            if value is None:
                raise ValidationFailed(f"ctx.queue.push: {spec.name!r} is ordered by {ordering.group_by!r}: the "
                                       f"payload needs that field, or pass the group option")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationFailed("ctx.queue.push: group must be a string or a number")
        text = value if isinstance(value, str) else json.dumps(value)
        if not 1 <= len(text) <= MAX_KEY_CHARS:
            raise ValidationFailed(f"ctx.queue.push: group must be 1 to {MAX_KEY_CHARS} characters")
        return text
