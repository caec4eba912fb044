"""The queue port both adapters implement, and the job store the SQS adapter leans on.

:class:`JobQueue` is shaped after SQS because SQS is the less capable side: a
delivery has a receive count and a receipt handle, failure is expressed by
changing visibility, the DLQ is a second queue. The SQLite adapter models those
same semantics in one file, so the runner, the dispatcher, the consumer and the
contract tests see no difference.

:class:`JobStore` keeps what SQS cannot: idempotency keys (a standard queue does
not dedupe and FIFO dedupe lasts five minutes), the "done" mark that stops a
succeeded job from running again when its delivery is repeated, the last error
of a job (shown by ``dlq list``) and per-function counters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from functions.queue_consumer.message import JobMessage


@dataclass(frozen=True, slots=True)
class ReceivedJob:
    """One delivery of a message. ``receive_count`` is the attempt number (1 on the first delivery)."""

    message: JobMessage
    receive_count: int
    receipt: str
    queue_ref: str = ""  # the adapter's address of the queue (SQS queue URL); empty for SQLite

    @property
    def job_id(self) -> str:
        return self.message.job_id

    @property
    def function(self) -> str:
        return self.message.function


@dataclass(frozen=True, slots=True)
class SendResult:
    job_id: str
    duplicate: bool = False  # an idempotency key seen before: nothing was enqueued


@dataclass(frozen=True, slots=True)
class DlqEntry:
    id: str  # the dead job's job_id: stable in both adapters, used by ``dlq replay``
    function: str
    attempts: int
    last_error: str
    trace_id: str
    message: JobMessage


@dataclass(slots=True)
class QueueStats:
    """Per function. ``failed`` counts failed attempts (each retry and each final failure once)."""

    pending: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    dlq: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"pending": self.pending, "in_flight": self.in_flight, "done": self.done,
                "failed": self.failed, "dlq": self.dlq}


class JobQueue(ABC):
    """Port: a durable at-least-once queue of :class:`JobMessage` with a dead-letter queue."""

    #: True when :meth:`receive` itself never hands out a job that already succeeded (it reads the
    #: job's state in the same transaction), so a runner need not ask :meth:`is_done` again, a thread
    #: hop per job. SQS redelivers succeeded messages, so by default the runner asks.
    receive_excludes_done: bool = False

    def next_visible_in_s(self) -> float | None:
        """Seconds until the next queued message becomes deliverable, None when none is queued.

        An adapter that cannot tell answers 0 (maybe now), so a poller keeps its shortest interval."""
        return 0.0

    def close(self) -> None:  # noqa: B027 - optional: only adapters holding a resource (SQLite) override it
        """Release what the adapter holds; SQS clients hold nothing worth closing."""

    @abstractmethod
    def send(self, message: JobMessage, *, delay_s: float = 0) -> SendResult:
        """Enqueue ``message``. A message whose ``idempotency_key`` was seen before for the same
        function enqueues nothing and returns the first job's id with ``duplicate=True``.
        ``message.group`` orders messages (FIFO per group) for functions with ``ordering``."""

    @abstractmethod
    def receive(self, *, max_messages: int = 10, visibility_timeout_s: float = 30,
                functions: Sequence[str] | None = None) -> list[ReceivedJob]:
        """Deliver up to ``max_messages`` visible messages and hide them for ``visibility_timeout_s``.

        FIFO groups: while a message of a group is in flight (or waiting for its retry), later
        messages of that group are not delivered. One receive may return several messages of a
        group, in order (SQS does; SQLite returns only the group's oldest), so a caller must
        handle one group's messages one after another."""

    @abstractmethod
    def ack(self, job: ReceivedJob) -> None:
        """The job succeeded: record it as done (by job id, first) and remove the message."""

    @abstractmethod
    def is_done(self, job_id: str) -> bool:
        """Whether a job already succeeded (a repeated delivery of it must not run again)."""

    @abstractmethod
    def change_visibility(self, job: ReceivedJob, timeout_s: float) -> None:
        """Hide the delivered message for ``timeout_s`` more seconds from now (0: visible at once)."""

    @abstractmethod
    def retry_later(self, job: ReceivedJob, delay_s: float, error: str) -> None:
        """A failed attempt with attempts left: record the error and deliver again after ``delay_s``."""

    @abstractmethod
    def dead_letter(self, job: ReceivedJob, error: str) -> None:
        """The last attempt failed: record the error and move the message to the DLQ (SQS: let the
        redrive policy move it at its next receive)."""

    @abstractmethod
    def release(self, job: ReceivedJob) -> None:
        """Give an interrupted delivery back at once, without it counting as an attempt where the
        backend allows (SQLite); SQS can only make it visible again."""

    @abstractmethod
    def dlq_list(self, *, function: str | None = None, limit: int = 100) -> list[DlqEntry]:
        """Dead jobs, oldest first."""

    @abstractmethod
    def dlq_replay(self, dlq_id: str) -> JobMessage:
        """Re-enqueue a dead job in its original trace and remove it from the DLQ; returns the new message.
        Raises :class:`~functions.queue_consumer.errors.JobNotFound` for an unknown id."""

    @abstractmethod
    def stats(self, functions: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Counts per function (every function that has or had jobs, plus ``functions``)."""


@dataclass(frozen=True, slots=True)
class JobStatus:
    job_id: str
    function: str
    state: str  # "failed" (last attempt failed) | "done"
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Counters:
    done: int = 0
    failed: int = 0


class JobStore(ABC):
    """Port: job bookkeeping that a plain queue cannot hold (DynamoDB in AWS)."""

    @abstractmethod
    def claim_idempotency(self, function: str, key: str, job_id: str) -> str | None:
        """Claim ``key`` for ``job_id`` atomically. Returns None when claimed now, else the job id that
        claimed it first."""

    @abstractmethod
    def release_idempotency(self, function: str, key: str, job_id: str) -> None:
        """Undo a claim whose message could not be sent (only if ``job_id`` still holds it)."""

    @abstractmethod
    def mark_done(self, job_id: str, function: str) -> None: ...

    @abstractmethod
    def record_failure(self, job_id: str, function: str, attempt: int, error: str) -> None: ...

    @abstractmethod
    def get(self, job_id: str) -> JobStatus | None: ...

    @abstractmethod
    def counters(self, function: str) -> Counters: ...
