"""``flux queue ... --stage``: the deployed stage's SQS queues and job table (moto), found from its stack outputs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from queue_support import make_sqs_queue, write_project
from typer.testing import CliRunner

from cli.commands.queue import app
from functions.queue_consumer.message import JobMessage
from functions.queue_consumer.sqs_queue import SqsJobQueue

runner = CliRunner()


@pytest.fixture
def stage(aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, SqsJobQueue]]:
    root = write_project(tmp_path / "app", {"jobs": {"async": True}, "other": {"async": True},
                                            "ordered": {"async": True, "ordering": {"group_by": "k"}}})
    with mock_aws():
        queue = make_sqs_queue()
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps({"flux-queue-test-dev": {
            "QueueUrls": json.dumps(queue.queue_urls), "DlqUrls": json.dumps(queue.dlq_urls),
            "JobsTableName": "flux-jobs", "ApiUrl": "https://example.invalid"}}))
        monkeypatch.setenv("FLUX_STACK_OUTPUTS", str(outputs))
        yield root, queue


def dead_job(queue: SqsJobQueue, message: Callable[..., JobMessage]) -> JobMessage:
    """A job as SQS's redrive leaves it: its body in the DLQ, its last error in the job table."""
    dead = message(function="jobs", payload={"orderId": 7})
    queue.store.record_failure(dead.job_id, "jobs", 2, "function_error: smtp refused")
    queue.client.send_message(QueueUrl=queue.dlq_urls["jobs"], MessageBody=dead.to_json())
    return dead


def test_dlq_list_and_replay_against_the_stage(stage: Any, message: Callable[..., JobMessage]) -> None:
    root, queue = stage
    dead = dead_job(queue, message)
    listed = runner.invoke(app, ["dlq", "list", "-C", str(root), "--stage", "dev", "--json"])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.output)
    assert (entry["id"], entry["function"], entry["attempts"], entry["last_error"], entry["trace_id"]) == \
        (dead.job_id, "jobs", 2, "function_error: smtp refused", dead.trace_id)

    replayed = runner.invoke(app, ["dlq", "replay", dead.job_id, "-C", str(root), "--stage", "dev", "--json"])
    assert replayed.exit_code == 0, replayed.output
    result = json.loads(replayed.output)
    assert (result["replay_of"], result["trace_id"]) == (dead.job_id, dead.trace_id)
    (job,) = queue.receive(functions=["jobs"])   # back on the function's own queue, in the original trace
    assert (job.message.trace_id, job.message.parent_span_id, job.message.replay_of) == \
        (dead.trace_id, dead.parent_span_id, dead.job_id)
    assert json.loads(runner.invoke(app, ["dlq", "list", "-C", str(root), "--stage", "dev", "--json"]).output) == []


def test_stats_against_the_stage(stage: Any, message: Callable[..., JobMessage]) -> None:
    root, queue = stage
    dead_job(queue, message)
    queue.send(message(function="other"))
    result = runner.invoke(app, ["stats", "-C", str(root), "--stage", "dev", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert (rows["jobs"]["dlq"], rows["jobs"]["failed"], rows["other"]["pending"]) == (1, 1, 1)


def test_a_stage_without_queues_or_outputs_is_a_clear_error(stage: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root, _queue = stage
    missing = runner.invoke(app, ["stats", "-C", str(root), "--stage", "prod"])
    assert missing.exit_code == 1 and "no outputs for the stack flux-queue-test-prod" in missing.output
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"flux-queue-test-dev": {"ApiUrl": "https://example.invalid"}}))
    monkeypatch.setenv("FLUX_STACK_OUTPUTS", str(empty))
    result = runner.invoke(app, ["dlq", "list", "-C", str(root), "--stage", "dev"])
    assert result.exit_code == 1 and "has no output JobsTableName" in result.output
