"""The job message every queue carries, as one JSON body.

The body holds everything needed to run the job *and* to keep it in the trace of
the request that enqueued it: the trace id, the enqueue span (the parent of each
attempt span) and the enqueue time (for the attempt's queue wait). The attempt
number is deliberately not in the body: it is the queue's receive count, which
SQS and the SQLite queue keep for us and which a crash cannot forget to bump.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from functions.queue_consumer.errors import MalformedMessage
from functions.shared.ids import new_trace_id
from functions.shared.spans import now_us

#: SQS refuses bodies over 256 KiB; the local queue keeps the same limit so that
#: a job accepted by ``flux dev`` is also accepted in AWS.
MAX_BODY_BYTES = 256 * 1024

_REQUIRED = ("job_id", "function", "trace_id", "enqueued_at_us")


def new_job_id() -> str:
    """32 lowercase hex characters, like a trace id (random, no coordination needed)."""
    return new_trace_id()


@dataclass(frozen=True, slots=True)
class JobMessage:
    job_id: str
    function: str
    payload: Any
    trace_id: str
    parent_span_id: str | None
    request_id: str
    enqueued_at_us: int
    group: str | None = None
    idempotency_key: str | None = None
    replay_of: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, body: str) -> JobMessage:
        """Parse a body; anything that is not a Flux job is a :class:`MalformedMessage`."""
        try:
            data = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise MalformedMessage(f"queue message is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedMessage("queue message is not a JSON object")
        missing = [name for name in _REQUIRED if not data.get(name)]
        if missing:
            raise MalformedMessage(f"queue message lacks {', '.join(missing)}")
        try:
            return cls(
                job_id=str(data["job_id"]),
                function=str(data["function"]),
                payload=data.get("payload"),
                trace_id=str(data["trace_id"]),
                parent_span_id=_optional_str(data.get("parent_span_id")),
                request_id=str(data.get("request_id") or data["trace_id"]),
                enqueued_at_us=int(data["enqueued_at_us"]),
                group=_optional_str(data.get("group")),
                idempotency_key=_optional_str(data.get("idempotency_key")),
                replay_of=_optional_str(data.get("replay_of")),
            )
        except (TypeError, ValueError) as exc:
            raise MalformedMessage(f"queue message has a bad field: {exc}") from None

    def replayed(self) -> JobMessage:
        """A fresh job for ``dlq replay``: same trace and parent (the original enqueue span), new id.

        The idempotency key is dropped on purpose: it would make the replay a
        duplicate of the job it replays and nothing would run.
        """
        return replace(self, job_id=new_job_id(), enqueued_at_us=now_us(), idempotency_key=None,
                       replay_of=self.job_id)


def _optional_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
