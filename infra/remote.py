"""A deployed stage, reached from the laptop: its stack outputs, its migrations, its queues.

The database of a deployed stage sits in isolated subnets no laptop reaches, so
``flux deploy`` (right after ``cdk deploy``) and ``flux db migrate --stage`` ask the
stage's engine Lambda to migrate (:func:`migrate_stage`): one code path, which the
deployed test tier runs too. ``flux queue ... --stage`` reads the stage's SQS queues
and job table (:func:`stage_queue`).

Stack outputs come from the file named by ``FLUX_STACK_OUTPUTS`` when set (the
``cdk deploy --outputs-file`` shape ``{"<stack>": {...}}`` or a flat object), else
from CloudFormation. Every boto3 client honours ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_<SERVICE>`` (boto3's own endpoint configuration), and the region
comes from ``--region`` or boto3's usual sources.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from functions.aws import names
from infra.errors import InfraError

OUTPUTS_FILE_ENV = "FLUX_STACK_OUTPUTS"
# A migration may take as long as the engine Lambda's timeout (infra/constructs/engine.py); never retried,
# because a retried invoke would start a second migration run behind the first.
MIGRATE_READ_TIMEOUT_S = 310


class StageUnavailable(InfraError):
    """The stage's stack, an output it should have, or the AWS call itself failed."""

    status, code = 503, "stage_unavailable"


def stack_outputs(stack: str, *, region: str | None = None, env: Mapping[str, str] | None = None,
                  cloudformation: Any = None) -> dict[str, str]:
    """The outputs of ``stack``: ``$FLUX_STACK_OUTPUTS`` (a JSON file) or CloudFormation ``DescribeStacks``."""
    env = os.environ if env is None else env
    path = env.get(OUTPUTS_FILE_ENV)
    if path:
        return _outputs_from_file(Path(path), stack)
    if cloudformation is None:
        from functions.shared.aws_clients import client

        cloudformation = client("cloudformation", region=region)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise StageUnavailable(f"cannot read the stack {stack}: {exc}") from None
    if not described:
        raise StageUnavailable(f"there is no stack {stack}")
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in described[0].get("Outputs", [])}


def _outputs_from_file(path: Path, stack: str) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StageUnavailable(f"{OUTPUTS_FILE_ENV}={path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise StageUnavailable(f"{OUTPUTS_FILE_ENV}={path}: not a JSON object")
    if isinstance(data.get(stack), dict):
        data = data[stack]
    elif any(isinstance(v, dict) for v in data.values()):
        raise StageUnavailable(f"{OUTPUTS_FILE_ENV}={path} has no outputs for the stack {stack}")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def require(outputs: Mapping[str, str], key: str, stack: str, why: str) -> str:
    value = outputs.get(key)
    if not value:
        raise StageUnavailable(f"the stack {stack} has no output {key} ({why})")
    return value


def migrate_stage(outputs: Mapping[str, str], stack: str, *, lambda_client: Any = None,
                  region: str | None = None) -> dict[str, Any]:
    """Invoke the stage's engine Lambda with ``{"action": "migrate"}``; its migration report."""
    function = require(outputs, names.OUTPUT_ENGINE_FUNCTION, stack, "a stack without a database has no migrations")
    if lambda_client is None:
        from functions.shared.aws_clients import client

        lambda_client = client("lambda", read_timeout_s=MIGRATE_READ_TIMEOUT_S, max_attempts=1, region=region)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = lambda_client.invoke(FunctionName=function, InvocationType="RequestResponse",
                                        Payload=json.dumps({"action": "migrate"}).encode())
        body = json.loads(response["Payload"].read() or b"null")
    except (BotoCoreError, ClientError, ValueError) as exc:
        raise StageUnavailable(f"cannot invoke the engine function {function}: {exc}") from None
    if response.get("FunctionError"):
        message = body.get("errorMessage") if isinstance(body, dict) else body
        raise StageUnavailable(f"the engine function {function} failed: {str(message)[:500]}")
    if not isinstance(body, dict) or not body.get("ok"):
        detail = body.get("message") if isinstance(body, dict) else body
        raise InfraError(f"migrations failed: {detail}")
    result = body.get("result")
    return result if isinstance(result, dict) else {}


def stage_queue(outputs: Mapping[str, str], stack: str, *, region: str | None = None) -> Any:
    """The stage's :class:`~functions.queue_consumer.sqs_queue.SqsJobQueue` (queues, DLQs and the job table)."""
    from functions.aws.queue import url_map
    from functions.queue_consumer.dynamo_job_store import DynamoJobStore
    from functions.queue_consumer.sqs_queue import SqsJobQueue
    from functions.shared.aws_clients import client

    why = "a stack without async functions has no queues"
    table = require(outputs, names.OUTPUT_JOBS_TABLE, stack, why)
    queues = url_map(require(outputs, names.OUTPUT_QUEUE_URLS, stack, why), names.OUTPUT_QUEUE_URLS)
    dlqs = url_map(require(outputs, names.OUTPUT_DLQ_URLS, stack, why), names.OUTPUT_DLQ_URLS)
    return SqsJobQueue(client("sqs", region=region), queues, dlqs,
                       DynamoJobStore(client("dynamodb", region=region), table))
