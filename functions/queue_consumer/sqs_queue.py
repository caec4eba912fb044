"""The AWS adapter of :class:`JobQueue`: one SQS queue (+ its DLQ) per async function.

Queue URLs come from name → URL maps given at construction (in Lambda from ``FLUX_QUEUE_URLS``
and ``FLUX_DLQ_URLS``, read by functions/aws/queue.py; in the CLI from the stack outputs). A queue
whose URL ends in ``.fifo`` is a FIFO queue (functions with ``ordering``): ``MessageGroupId`` is the job's group and
``MessageDeduplicationId`` its idempotency key (or job id). FIFO queues cannot delay
single messages, so a delay there is refused (the enqueue service refuses it first).

Dead-lettering is SQS's redrive policy (``maxReceiveCount`` = ``retry.max_attempts``):
after the last failed attempt this adapter records the error in the :class:`JobStore`
and makes the message visible at once, so SQS moves it, body intact, at its next
receive. The DLQ listing joins the DLQ's messages with those records.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.queue_consumer.errors import JobNotFound, MalformedMessage, QueueError, QueueUnavailable
from functions.queue_consumer.message import JobMessage
from functions.queue_consumer.ports import DlqEntry, JobQueue, JobStore, QueueStats, ReceivedJob, SendResult

_log = logging.getLogger("flux.queue")

MAX_VISIBILITY_S = 43_200
_SQS_TOKEN = re.compile(r"^[\x21-\x7e]{1,128}$")
_SCAN_VISIBILITY_S = 5


def sqs_token(value: str) -> str:
    """A MessageGroupId / MessageDeduplicationId: the value itself when SQS accepts it, else its hash."""
    if _SQS_TOKEN.match(value):
        return value
    return "sha256-" + hashlib.sha256(value.encode("utf-8")).hexdigest()


class SqsJobQueue(JobQueue):
    def __init__(self, client: Any, queue_urls: Mapping[str, str], dlq_urls: Mapping[str, str],
                 store: JobStore) -> None:
        self.client = client
        self.queue_urls = dict(queue_urls)
        self.dlq_urls = dict(dlq_urls)
        self.store = store

    # -- plumbing --------------------------------------------------------------------------------

    def url_for(self, function: str) -> str:
        try:
            return self.queue_urls[function]
        except KeyError:
            raise QueueError(f"no queue is configured for function {function!r}") from None

    def _sqs(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailable(f"SQS {operation} failed: {exc}") from exc

    # -- the port --------------------------------------------------------------------------------

    def send(self, message: JobMessage, *, delay_s: float = 0) -> SendResult:
        url = self.url_for(message.function)
        fifo = url.endswith(".fifo")
        params: dict[str, Any] = {"QueueUrl": url, "MessageBody": message.to_json()}
        if fifo:
            if delay_s > 0:
                raise QueueError(f"function {message.function!r} is ordered (FIFO): SQS cannot delay one message")
            if not message.group:
                raise QueueError(f"function {message.function!r} is ordered (FIFO): the job needs a group")
            params["MessageGroupId"] = sqs_token(message.group)
            params["MessageDeduplicationId"] = sqs_token(message.idempotency_key or message.job_id)
        elif delay_s > 0:
            params["DelaySeconds"] = min(900, math.ceil(delay_s))
        key = message.idempotency_key
        if key is not None:
            first = self.store.claim_idempotency(message.function, key, message.job_id)
            if first is not None and first != message.job_id:
                return SendResult(first, duplicate=True)
        try:
            self._sqs("send_message", **params)
        except QueueUnavailable:
            if key is not None:
                self.store.release_idempotency(message.function, key, message.job_id)
            raise
        return SendResult(message.job_id)

    def receive(self, *, max_messages: int = 10, visibility_timeout_s: float = 30,
                functions: Sequence[str] | None = None) -> list[ReceivedJob]:
        delivered: list[ReceivedJob] = []
        for function in (functions if functions is not None else list(self.queue_urls)):
            remaining = max_messages - len(delivered)
            if remaining <= 0:
                break
            url = self.url_for(function)
            response = self._sqs("receive_message", QueueUrl=url, MaxNumberOfMessages=min(10, remaining),
                                 VisibilityTimeout=min(MAX_VISIBILITY_S, math.ceil(visibility_timeout_s)),
                                 MessageSystemAttributeNames=["ApproximateReceiveCount"], WaitTimeSeconds=0)
            for raw in response.get("Messages", []):
                job = self.received_job(raw["Body"], raw["ReceiptHandle"],
                                        raw.get("Attributes", {}).get("ApproximateReceiveCount", "1"), url)
                if job is not None:
                    delivered.append(job)
        return delivered

    @staticmethod
    def received_job(body: str, receipt: str, receive_count: str | int, queue_url: str) -> ReceivedJob | None:
        """A delivery as the port sees it; None for a body that is not a Flux job (left to the redrive)."""
        try:
            message = JobMessage.from_json(body)
        except MalformedMessage as exc:
            _log.error("queue: %s; leaving it for the dead-letter queue", exc.message)
            return None
        return ReceivedJob(message, int(receive_count), receipt, queue_url)

    def ack(self, job: ReceivedJob) -> None:
        # Done first: if the delete is lost, the repeated delivery sees the mark and is skipped.
        self.store.mark_done(job.job_id, job.function)
        try:
            self.client.delete_message(QueueUrl=job.queue_ref or self.url_for(job.function), ReceiptHandle=job.receipt)
        except (ClientError, BotoCoreError) as exc:
            _log.warning("queue: delete of done job %s failed (%s); its next delivery will be skipped", job.job_id, exc)

    def is_done(self, job_id: str) -> bool:
        status = self.store.get(job_id)
        return status is not None and status.state == "done"

    def change_visibility(self, job: ReceivedJob, timeout_s: float) -> None:
        self._sqs("change_message_visibility", QueueUrl=job.queue_ref or self.url_for(job.function),
                  ReceiptHandle=job.receipt, VisibilityTimeout=max(0, min(MAX_VISIBILITY_S, math.ceil(timeout_s))))

    def retry_later(self, job: ReceivedJob, delay_s: float, error: str) -> None:
        self.store.record_failure(job.job_id, job.function, job.receive_count, error)
        self.change_visibility(job, delay_s)

    def dead_letter(self, job: ReceivedJob, error: str) -> None:
        self.store.record_failure(job.job_id, job.function, job.receive_count, error)
        self.change_visibility(job, 0)

    def release(self, job: ReceivedJob) -> None:
        self.change_visibility(job, 0)

    def dlq_list(self, *, function: str | None = None, limit: int = 100) -> list[DlqEntry]:
        entries: list[DlqEntry] = []
        for name, url in self._dlqs(function):
            for _raw, message in self._scan(url, limit - len(entries)):
                status = self.store.get(message.job_id)
                entries.append(DlqEntry(
                    id=message.job_id, function=message.function or name,
                    attempts=status.attempts if status else 0,
                    last_error=status.last_error if status else "",
                    trace_id=message.trace_id, message=message))
            if len(entries) >= limit:
                break
        return entries

    def dlq_replay(self, dlq_id: str) -> JobMessage:
        for _name, url in self._dlqs(None):
            for raw, message in self._scan(url, 10_000, keep_hidden={dlq_id}):
                if message.job_id != dlq_id:
                    continue
                fresh = message.replayed()
                self.send(fresh)
                self._sqs("delete_message", QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"])
                return fresh
        raise JobNotFound(f"no job {dlq_id!r} in the dead-letter queue")

    def stats(self, functions: Sequence[str] | None = None) -> dict[str, QueueStats]:
        names = sorted(set(self.queue_urls) | set(functions or ()))
        result: dict[str, QueueStats] = {}
        wanted = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                  "ApproximateNumberOfMessagesDelayed"]
        for name in names:
            stats = QueueStats()
            if name in self.queue_urls:
                attrs = self._sqs("get_queue_attributes", QueueUrl=self.queue_urls[name],
                                  AttributeNames=wanted)["Attributes"]
                stats.pending = int(attrs.get(wanted[0], 0)) + int(attrs.get(wanted[2], 0))
                stats.in_flight = int(attrs.get(wanted[1], 0))
            if name in self.dlq_urls:
                attrs = self._sqs("get_queue_attributes", QueueUrl=self.dlq_urls[name], AttributeNames=wanted)
                stats.dlq = sum(int(v) for v in attrs["Attributes"].values())
            counters = self.store.counters(name)
            stats.done, stats.failed = counters.done, counters.failed
            result[name] = stats
        return result

    # -- DLQ scanning ----------------------------------------------------------------------------

    def _dlqs(self, function: str | None) -> list[tuple[str, str]]:
        if function is not None:
            return [(function, self.dlq_urls[function])] if function in self.dlq_urls else []
        return sorted(self.dlq_urls.items())

    def _scan(self, url: str, limit: int, keep_hidden: set[str] | None = None) -> list[tuple[dict, JobMessage]]:
        """Read up to ``limit`` DLQ messages without consuming them.

        SQS has no "peek": each message is received with a short visibility timeout so the
        scan moves forward, then every scanned message is made visible again (except the ones
        in ``keep_hidden``, which the caller is about to delete). Malformed bodies are skipped."""
        seen: dict[str, tuple[dict, JobMessage | None]] = {}
        while len(seen) < limit:
            response = self._sqs("receive_message", QueueUrl=url, MaxNumberOfMessages=10,
                                 VisibilityTimeout=_SCAN_VISIBILITY_S, WaitTimeSeconds=0)
            batch = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
            if not batch:
                break
            for raw in batch:
                try:
                    seen[raw["MessageId"]] = (raw, JobMessage.from_json(raw["Body"]))
                except MalformedMessage:
                    seen[raw["MessageId"]] = (raw, None)
        keep = keep_hidden or set()
        to_show = [(raw, m) for raw, m in seen.values() if m is None or m.job_id not in keep]
        for start in range(0, len(to_show), 10):
            entries = [{"Id": str(i), "ReceiptHandle": raw["ReceiptHandle"], "VisibilityTimeout": 0}
                       for i, (raw, _m) in enumerate(to_show[start:start + 10])]
            self._sqs("change_message_visibility_batch", QueueUrl=url, Entries=entries)
        return [(raw, m) for raw, m in seen.values() if m is not None][:limit]
