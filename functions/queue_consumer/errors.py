"""Errors of the queue layer, rooted in :class:`QueueError` (a :class:`FluxError`)."""

from __future__ import annotations

from functions.shared.errors import FluxError


class QueueError(FluxError):
    """Root of the queue package's errors."""

    status, code = 500, "queue_error"


class QueueUnavailable(QueueError):
    """The queue backend (SQLite file, SQS, DynamoDB) could not take or give a message."""

    status, code = 503, "queue_unavailable"


class JobNotFound(QueueError):
    """``flux queue dlq replay <id>`` named a job that is not in the dead-letter queue."""

    status, code = 404, "job_not_found"


class MalformedMessage(QueueError):
    """A queue message body is not a Flux job (it can never succeed, so it ends in the DLQ)."""

    status, code = 400, "malformed_message"
