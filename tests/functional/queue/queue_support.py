"""Helpers of the queue functional tests (conftest.py puts this folder on sys.path).

Functions every test queue knows (the same in both adapters):
- ``jobs``: standard queue, max_attempts 2;
- ``other``: standard queue, max_attempts 3;
- ``ordered``: FIFO queue (SQS ``.fifo``), max_attempts 3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3

from functions.queue_consumer.dynamo_job_store import DynamoJobStore, create_jobs_table
from functions.queue_consumer.sqs_queue import SqsJobQueue

MAX_ATTEMPTS = {"jobs": 2, "other": 3, "ordered": 3}


def make_sqs_queue() -> SqsJobQueue:
    """Inside mock_aws: the queues and DLQs the CDK stack would create, plus the job table."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    create_jobs_table(dynamodb, "flux-jobs")
    queue_urls: dict[str, str] = {}
    dlq_urls: dict[str, str] = {}
    for function, attempts in MAX_ATTEMPTS.items():
        fifo = function == "ordered"
        suffix = ".fifo" if fifo else ""
        extra = {"FifoQueue": "true"} if fifo else {}
        dlq_url = sqs.create_queue(QueueName=f"flux-{function}-dlq{suffix}", Attributes=extra)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName=f"flux-{function}{suffix}", Attributes={
            **extra, "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": attempts})})["QueueUrl"]
        queue_urls[function] = url
        dlq_urls[function] = dlq_url
    return SqsJobQueue(sqs, queue_urls, dlq_urls, DynamoJobStore(dynamodb, "flux-jobs"))



def write_project(root: Path, functions: dict[str, dict[str, Any]]) -> Path:
    """A Flux project on disk whose functions have the given flux.json contents."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "flux.json").write_text(json.dumps({"name": "queue-test"}))
    for name, config in functions.items():
        folder = root / "functions" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.ts").write_text("export default async function handler(input, ctx) { return input; }\n")
        (folder / "flux.json").write_text(json.dumps(config))
    return root
