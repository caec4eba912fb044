"""The SQS job queue of a Lambda, from its environment (``FLUX_QUEUE_URLS``, ``FLUX_DLQ_URLS``, ``FLUX_JOBS_TABLE``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from functions.aws import names
from functions.queue_consumer.dynamo_job_store import DynamoJobStore
from functions.queue_consumer.errors import QueueError
from functions.queue_consumer.sqs_queue import SqsJobQueue
from functions.shared.aws_clients import client


def url_map(text: str | None, what: str) -> dict[str, str]:
    """A JSON object of function name → queue URL (an environment variable or a stack output)."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        raise QueueError(f"{what} is not JSON") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise QueueError(f"{what} must be a JSON object of function name to queue URL")
    return value


def sqs_job_queue(env: Mapping[str, str] | None = None) -> SqsJobQueue:
    env = os.environ if env is None else env
    table = env.get(names.JOBS_TABLE)
    if not table:
        raise QueueError(f"{names.JOBS_TABLE} is not set: the queue needs its job table")
    return SqsJobQueue(client("sqs"), url_map(env.get(names.QUEUE_URLS), names.QUEUE_URLS),
                       url_map(env.get(names.DLQ_URLS), names.DLQ_URLS), DynamoJobStore(client("dynamodb"), table))
