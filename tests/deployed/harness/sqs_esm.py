"""SQS event source mappings (``AWS::Lambda::EventSourceMapping``), polling the moto server.

From the Lambda Developer Guide ("Using Lambda with Amazon SQS"):

* Lambda polls the queue and invokes the function synchronously with up to ``BatchSize``
  records (``eventSource`` ``aws:sqs``; ``attributes`` with ``ApproximateReceiveCount``,
  timestamps and, for FIFO queues, ``MessageGroupId`` / ``SequenceNumber``);
* at most ``ScalingConfig.MaximumConcurrency`` invocations at once for the mapping;
* on success the batch is deleted; with ``ReportBatchItemFailures`` only the records named
  in ``batchItemFailures`` stay (an unknown or empty ``itemIdentifier`` fails the whole
  batch); on a function error nothing is deleted;
* records not deleted become visible again after the queue's visibility timeout (or when
  the function changes it), and SQS itself moves a message to the dead-letter queue
  once its receive count passes ``maxReceiveCount`` (moto implements the redrive);
* FIFO order per message group comes from SQS: a group with messages in flight returns
  no further messages until they are deleted or visible again.

Polls use 1 s long polls (Lambda uses 20 s; both return as soon as a message arrives),
so the tier stops quickly.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.deployed.harness.aws_services import MotoServer
from tests.deployed.harness.lambda_service import LambdaError, LambdaService
from tests.deployed.harness.template import Stack


def _attribute_value(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        import base64

        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return out


def record(message: dict[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    entry = {
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {k: _attribute_value(v) for k, v in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message.get("MD5OfBody", ""), "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        entry["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return entry


@dataclass
class EventSourceMapping:
    function: str
    queue_url: str
    queue_arn: str
    batch_size: int
    max_concurrency: int
    report_failures: bool
    moto: MotoServer
    lambdas: LambdaService
    region: str
    batches: list[list[str]] = field(default_factory=list)      # message ids per invocation (tests)
    failures_reported: list[str] = field(default_factory=list)

    def start(self) -> None:
        self._stop = threading.Event()
        self._slots = threading.Semaphore(self.max_concurrency)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.max_concurrency,
                                                           thread_name_prefix="esm-invoke")
        self._client = self.moto.client("sqs", self.region)
        self._thread = threading.Thread(target=self._poll, name=f"esm-{self.function[-20:]}", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            try:
                got = self._client.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=min(self.batch_size, 10), WaitTimeSeconds=1,
                    AttributeNames=["All"], MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"])
            except Exception:  # noqa: BLE001 - the server is going away at shutdown; Lambda retries polls
                self._slots.release()
                if self._stop.wait(0.5):
                    return
                continue
            messages = got.get("Messages", [])
            if not messages:
                self._slots.release()
                continue
            self._pool.submit(self._invoke, messages)

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        try:
            event = {"Records": [record(m, queue_arn=self.queue_arn, region=self.region) for m in messages]}
            ids = [m["MessageId"] for m in messages]
            self.batches.append(ids)
            try:
                result = self.lambdas.invoke(self.function, json.dumps(event).encode())
            except LambdaError:
                return  # throttled: the batch becomes visible again after the visibility timeout
            if result.function_error:
                return
            keep = self._failed(result.payload, ids)
            done = [m for m in messages if m["MessageId"] not in keep]
            for chunk in range(0, len(done), 10):
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                           for i, m in enumerate(done[chunk:chunk + 10])]
                with contextlib.suppress(Exception):
                    self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        finally:
            self._slots.release()

    def _failed(self, payload: bytes, ids: list[str]) -> set[str]:
        if not self.report_failures:
            return set()
        try:
            output = json.loads(payload or b"null")
        except ValueError:
            return set(ids)
        if not isinstance(output, dict) or not output.get("batchItemFailures"):
            return set()
        failed: set[str] = set()
        for item in output["batchItemFailures"]:
            identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not identifier or identifier not in ids:
                return set(ids)  # an invalid report fails the whole batch
            failed.add(identifier)
        self.failures_reported += sorted(failed)
        return failed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)


def mappings_of(stack: Stack, moto: MotoServer, lambdas: LambdaService) -> Iterator[EventSourceMapping]:
    queues = {stack.attr(lid, "Arn"): lid for lid in stack.of_type("AWS::SQS::Queue")}
    for resource in stack.of_type("AWS::Lambda::EventSourceMapping").values():
        props = resource["Properties"]
        arn = stack.resolve(props["EventSourceArn"])
        if arn not in queues:
            raise NotImplementedError(f"event source {arn}: only SQS queues of the stack are emulated")
        yield EventSourceMapping(
            function=str(stack.resolve(props["FunctionName"])), queue_url=stack.attr(queues[arn], "QueueUrl"),
            queue_arn=arn, batch_size=int(props.get("BatchSize", 10)),
            max_concurrency=int(props.get("ScalingConfig", {}).get("MaximumConcurrency", 5)),
            report_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            moto=moto, lambdas=lambdas, region=stack.region)
