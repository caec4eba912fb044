"""The SQS batch logic: run each record of a Lambda SQS event, report only the failed ones.

The result is a partial batch response ``{"batchItemFailures": [{"itemIdentifier": id}]}``
(the event source mapping needs ``ReportBatchItemFailures``): only records whose job
failed (or could not be run) are listed, each with the ``messageId`` it came with, so
SQS deletes the others and redelivers these after the visibility the runner set for
their backoff. When every record fails, every id is listed, which fails the batch.

FIFO queues (``eventSourceARN`` ending in ``.fifo``): records arrive in group order, and
the first failure in a group stops that group: its later records in the batch are
reported as failures without being run and made visible again, so the group resumes
in order, starting with the failed record, after its backoff.

This is written here rather than with Powertools' ``SqsFifoPartialProcessor``
because the runner is async and because a Flux "failure" is decided by the runner
(outcome retry/dead), not by an exception from a record handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from functions.queue_consumer.runner import JobRunner
from functions.queue_consumer.sqs_queue import SqsJobQueue

_log = logging.getLogger("flux.queue")


@dataclass(frozen=True, slots=True)
class SqsRecord:
    """A read-only view of one record of a Lambda SQS event."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    group_id: str | None
    source_arn: str

    @classmethod
    def from_event(cls, record: Mapping[str, Any]) -> SqsRecord:
        message_id = record.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            raise ValueError("an SQS record without a messageId cannot be reported; failing the whole batch")
        attributes = record.get("attributes") or {}
        return cls(message_id=message_id, receipt_handle=str(record.get("receiptHandle") or ""),
                   body=str(record.get("body") or ""),
                   receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
                   group_id=attributes.get("MessageGroupId"), source_arn=str(record.get("eventSourceARN") or ""))

    @property
    def fifo(self) -> bool:
        return self.source_arn.endswith(".fifo")


def queue_url_from_arn(arn: str) -> str:
    """``arn:aws:sqs:<region>:<account>:<name>`` → the queue URL SQS APIs take."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return ""
    _arn, partition, _sqs, region, account, name = parts
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


class BatchConsumer:
    def __init__(self, runner: JobRunner, queue_urls: Mapping[str, str] | None = None) -> None:
        self.runner = runner
        self._url_by_name = {url.rsplit("/", 1)[-1]: url for url in (queue_urls or {}).values()}

    def _queue_url(self, arn: str) -> str:
        name = arn.rsplit(":", 1)[-1]
        return self._url_by_name.get(name) or queue_url_from_arn(arn)

    async def process(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        records = [SqsRecord.from_event(r) for r in event.get("Records") or []]
        failures: list[str] = []
        stopped_groups: set[str] = set()
        for record in records:
            group = record.group_id if record.fifo else None
            if group is not None and group in stopped_groups:
                failures.append(record.message_id)
                self._give_back(record)
                continue
            if not await self._run(record):
                failures.append(record.message_id)
                if group is not None:
                    stopped_groups.add(group)
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}

    async def _run(self, record: SqsRecord) -> bool:
        """True when the record may be deleted (done, or a duplicate of a done job)."""
        job = SqsJobQueue.received_job(record.body, record.receipt_handle, record.receive_count,
                                       self._queue_url(record.source_arn))
        if job is None:
            return False  # malformed: report it; the redrive policy takes it to the DLQ, body intact
        try:
            result = await self.runner.run(job)
        except Exception:  # noqa: BLE001 - a queue/store outage: SQS redelivers after the visibility timeout
            _log.exception("queue: job %s of %s could not be settled", job.job_id, job.function)
            return False
        return not result.failed

    def _give_back(self, record: SqsRecord) -> None:
        """A FIFO record skipped because an earlier record of its group failed: make it visible now.
        The failed record stays in flight for its backoff, which keeps the group locked, so the
        group resumes in order; left hidden, the skipped record would lock it for a whole
        visibility timeout instead."""
        job = SqsJobQueue.received_job(record.body, record.receipt_handle, record.receive_count,
                                       self._queue_url(record.source_arn))
        if job is None:
            return
        try:
            self.runner.queue.release(job)
        except Exception:  # noqa: BLE001 - it then comes back after its visibility timeout
            _log.warning("queue: could not make skipped FIFO record %s visible again", record.message_id)
