"""The AWS path under moto: EnqueueService → SQS → (event source mapping, simulated) → Lambda handler → redrive.

The event source mapping is simulated by receiving from SQS with boto3 and shaping the
messages into a Lambda SQS event, exactly as the mapping does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from queue_support import make_sqs_queue, write_project

from functions.aws import entry_worker as lambda_entry
from functions.aws import runtime_state
from functions.queue_consumer.consumer import BatchConsumer
from functions.queue_consumer.runner import JobRunner
from functions.queue_consumer.service import EnqueueService
from functions.queue_consumer.sqs_queue import SqsJobQueue
from functions.runtime.host import Services
from functions.shared.context import CallContext
from functions.shared.errors import FunctionError
from functions.shared.manifest import Project, load_project
from functions.shared.spans import MemorySink

TRACE = "ab" * 16


class Invoker:
    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.calls: list[Any] = []

    async def invoke(self, function: str, payload: Any, call: CallContext, *,
                     span_attrs: dict[str, Any] | None = None) -> Any:
        self.calls.append(payload)
        if payload["key"] in self.failing:
            raise FunctionError(f"{payload['key']} refused")
        return {}


@pytest.fixture
def aws(aws_env: None, tmp_path: Path) -> Iterator[tuple[SqsJobQueue, Project, Invoker, MemorySink]]:
    project = load_project(write_project(tmp_path / "app", {
        "jobs": {"async": True, "retry": {"max_attempts": 2, "base_ms": 0}},
        "ordered": {"async": True, "ordering": {"group_by": "customer"}, "retry": {"max_attempts": 3, "base_ms": 0}},
    }))
    with mock_aws():
        queue = make_sqs_queue()
        invoker, sink = Invoker(), MemorySink()
        loop = asyncio.new_event_loop()
        runtime_state.install("worker", runtime_state.RuntimeState(project, invoker, None, sink,  # type: ignore[arg-type]
                                                                    Services(), loop))
        lambda_entry.reset(BatchConsumer(JobRunner(queue, invoker, project, sink), queue.queue_urls))
        yield queue, project, invoker, sink
        lambda_entry.reset()
        runtime_state._states.clear()
        loop.close()


def poll(queue: SqsJobQueue, function: str) -> dict[str, Any]:
    """What the event source mapping does: receive a batch and build the Lambda event."""
    url = queue.queue_urls[function]
    arn = queue.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = queue.client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                            MessageSystemAttributeNames=["All"]).get("Messages", [])
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m["Attributes"], "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"} for m in messages]}


def push(queue: SqsJobQueue, project: Project, function: str, payload: Any, sink: MemorySink) -> str:
    call = CallContext(TRACE, "00000000000000cc", function="create_order", request_id=TRACE, sink=sink)
    return asyncio.run(EnqueueService(queue, project).push(function, payload, {}, call))["job_id"]


def test_failures_back_off_then_redrive_to_the_dlq_and_replay_runs_in_the_same_trace(aws: Any) -> None:
    queue, project, invoker, sink = aws
    invoker.failing.add("bad")
    good_id = push(queue, project, "jobs", {"key": "good"}, sink)
    bad_id = push(queue, project, "jobs", {"key": "bad"}, sink)

    event = poll(queue, "jobs")
    bad_record = next(r for r in event["Records"] if bad_id in r["body"])
    assert lambda_entry.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": bad_record["messageId"]}]}
    assert queue.is_done(good_id) and not queue.is_done(bad_id)

    second = poll(queue, "jobs")  # backoff of 0 s: visible again at once, receive count 2
    assert [r["attributes"]["ApproximateReceiveCount"] for r in second["Records"]] == ["2"]
    assert len(lambda_entry.handler(second, None)["batchItemFailures"]) == 1
    assert poll(queue, "jobs")["Records"] == []  # the redrive moved it on this receive

    (entry,) = queue.dlq_list()
    assert (entry.id, entry.attempts, entry.last_error, entry.trace_id) == \
        (bad_id, 2, "function_error: bad refused", TRACE)
    attempts = [s for s in sink.spans if s.name == "async → jobs" and s.attrs["job_id"] == bad_id]
    assert [s.attrs["outcome"] for s in attempts] == ["retry", "dead"]
    enqueue_span = next(s for s in sink.spans if s.name == "enqueue jobs" and s.attrs["job_id"] == bad_id)
    assert {s.parent_span_id for s in attempts} == {enqueue_span.span_id}

    invoker.failing.clear()
    fresh = queue.dlq_replay(bad_id)
    assert lambda_entry.handler(poll(queue, "jobs"), None) == {"batchItemFailures": []}
    replayed = next(s for s in sink.spans if s.attrs.get("job_id") == fresh.job_id)
    assert (replayed.trace_id, replayed.parent_span_id, replayed.attrs["replay_of"]) == \
        (TRACE, enqueue_span.span_id, bad_id)
    stats = queue.stats()["jobs"]
    assert (stats.done, stats.failed, stats.dlq, stats.pending) == (2, 2, 0, 0)


def test_a_repeated_delivery_of_a_done_job_does_not_run_it_again(aws: Any) -> None:
    queue, project, invoker, sink = aws
    push(queue, project, "jobs", {"key": "once"}, sink)
    event = poll(queue, "jobs")
    lambda_entry.handler(event, None)
    # SQS standard queues may deliver twice: the same body arrives again.
    queue.client.send_message(QueueUrl=queue.queue_urls["jobs"], MessageBody=event["Records"][0]["body"])
    assert lambda_entry.handler(poll(queue, "jobs"), None) == {"batchItemFailures": []}
    assert invoker.calls == [{"key": "once"}]


def test_fifo_batch_stops_the_group_and_the_group_resumes_in_order(aws: Any) -> None:
    queue, project, invoker, sink = aws
    invoker.failing.add("a1")
    ids = [push(queue, project, "ordered", {"customer": c, "key": k}, sink) for c, k in
           (("A", "a1"), ("A", "a2"), ("B", "b1"))]
    event = poll(queue, "ordered")
    by_job = {next(i for i in ids if i in r["body"]): r["messageId"] for r in event["Records"]}
    response = lambda_entry.handler(event, None)
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == \
        sorted([by_job[ids[0]], by_job[ids[1]]])
    assert [c["key"] for c in invoker.calls] == ["a1", "b1"]  # a2 was not run behind the failed a1
    invoker.failing.clear()
    again = poll(queue, "ordered")
    assert [next(i for i in ids if i in r["body"]) for r in again["Records"]] == [ids[0], ids[1]]
    assert lambda_entry.handler(again, None) == {"batchItemFailures": []}
    assert [c["key"] for c in invoker.calls] == ["a1", "b1", "a1", "a2"]


def test_the_worker_entry_builds_its_queue_from_the_environment(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    queue, project, invoker, sink = aws
    monkeypatch.setenv("FLUX_QUEUE_URLS", json.dumps(queue.queue_urls))
    monkeypatch.setenv("FLUX_DLQ_URLS", json.dumps(queue.dlq_urls))
    monkeypatch.setenv("FLUX_JOBS_TABLE", "flux-jobs")
    lambda_entry.reset()   # the next batch builds the consumer from the container state and the environment
    job_id = push(queue, project, "jobs", {"key": "wired"}, sink)
    assert lambda_entry.handler(poll(queue, "jobs"), None) == {"batchItemFailures": []}
    assert invoker.calls == [{"key": "wired"}]
    assert queue.is_done(job_id)  # the handler's own SqsJobQueue wrote to the same job table
    assert lambda_entry.consumer(runtime_state.state("worker")).runner.queue.dlq_urls == queue.dlq_urls
