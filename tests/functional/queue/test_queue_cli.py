"""``flux queue`` commands against a real .flux/queue.db, through Typer's test runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from queue_support import write_project
from typer.testing import CliRunner

from cli.commands.queue import app, queue_path
from functions.queue_consumer.message import JobMessage
from functions.queue_consumer.sqlite_queue import SqliteJobQueue

runner = CliRunner()


def project_with_a_dead_job(tmp_path: Path, message: Callable[..., JobMessage]) -> tuple[Path, JobMessage]:
    root = write_project(tmp_path / "app", {"send_invoice": {"async": True}, "flaky": {"async": True},
                                            "hello": {}})
    queue = SqliteJobQueue(queue_path(root), max_attempts=1)
    dead = message(function="send_invoice", payload={"orderId": 9})
    queue.send(dead)
    (job,) = queue.receive(visibility_timeout_s=60)
    queue.dead_letter(job, "function_error: smtp refused")
    queue.send(message(function="send_invoice"))
    queue.close()
    return root, dead


def test_dlq_list_shows_id_function_attempts_last_error_and_trace(tmp_path: Path, message: Callable) -> None:
    root, dead = project_with_a_dead_job(tmp_path, message)
    result = runner.invoke(app, ["dlq", "list", "-C", str(root), "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    assert {k: entry[k] for k in ("id", "function", "attempts", "last_error", "trace_id", "payload")} == \
        {"id": dead.job_id, "function": "send_invoice", "attempts": 1, "last_error": "function_error: smtp refused",
         "trace_id": dead.trace_id, "payload": {"orderId": 9}}
    human = runner.invoke(app, ["dlq", "list", "-C", str(root)], env={"COLUMNS": "250"})
    assert dead.job_id in human.output and "smtp refused" in human.output


def test_dlq_replay_reenqueues_in_the_same_trace(tmp_path: Path, message: Callable) -> None:
    root, dead = project_with_a_dead_job(tmp_path, message)
    result = runner.invoke(app, ["dlq", "replay", dead.job_id, "--project-dir", str(root), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["replay_of"], out["trace_id"], out["function"]) == (dead.job_id, dead.trace_id, "send_invoice")
    queue = SqliteJobQueue(queue_path(root))
    jobs = {j.job_id: j for j in queue.receive(visibility_timeout_s=60)}
    replayed = jobs[out["job_id"]].message
    assert (replayed.parent_span_id, replayed.replay_of, replayed.payload) == (dead.parent_span_id, dead.job_id,
                                                                                {"orderId": 9})
    assert queue.dlq_list() == []
    again = runner.invoke(app, ["dlq", "replay", dead.job_id, "-C", str(root)])
    assert again.exit_code == 1 and "no job" in again.output


def test_stats_lists_every_async_function(tmp_path: Path, message: Callable) -> None:
    root, _dead = project_with_a_dead_job(tmp_path, message)
    result = runner.invoke(app, ["stats", "-C", str(root), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "flaky": {"pending": 0, "in_flight": 0, "done": 0, "failed": 0, "dlq": 0},
        "send_invoice": {"pending": 1, "in_flight": 0, "done": 0, "failed": 1, "dlq": 1},
    }


def test_commands_on_a_project_without_a_queue_do_not_create_one(tmp_path: Path) -> None:
    root = write_project(tmp_path / "fresh", {"send_invoice": {"async": True}})
    assert json.loads(runner.invoke(app, ["dlq", "list", "-C", str(root), "--json"]).output) == []
    assert runner.invoke(app, ["stats", "-C", str(root)]).exit_code == 0
    replay = runner.invoke(app, ["dlq", "replay", "abc", "-C", str(root)])
    assert replay.exit_code == 1
    assert not queue_path(root).exists()
