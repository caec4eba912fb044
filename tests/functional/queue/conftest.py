"""Fixtures of the queue functional tests: both JobQueue adapters on the same functions (see
queue_support.MAX_ATTEMPTS), and job messages."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from functions.queue_consumer.message import JobMessage, new_job_id
from functions.queue_consumer.ports import JobQueue
from functions.queue_consumer.sqlite_queue import SqliteJobQueue
from functions.shared.ids import new_span_id, new_trace_id
from functions.shared.spans import now_us

sys.path.insert(0, str(Path(__file__).parent))  # for queue_support

from queue_support import MAX_ATTEMPTS, make_sqs_queue


class ShiftedClock:
    """Real time plus a shift that tests advance, so the SQLite side need not sleep."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture(params=["sqlite", "sqs"])
def queue(request: pytest.FixtureRequest, tmp_path: Path, clock: ShiftedClock) -> Iterator[JobQueue]:
    if request.param == "sqlite":
        local = SqliteJobQueue(tmp_path / ".flux" / "queue.db", max_attempts=MAX_ATTEMPTS, clock=clock)
        yield local
        local.close()
        return
    request.getfixturevalue("aws_env")
    with mock_aws():
        yield make_sqs_queue()


@pytest.fixture
def pass_time(queue: JobQueue, clock: ShiftedClock) -> Callable[[float], None]:
    """Let ``seconds`` pass: SQS under moto keeps real time, so sleep there; shift the clock for SQLite."""
    def advance(seconds: float) -> None:
        if isinstance(queue, SqliteJobQueue):
            clock.shift += seconds
        else:
            time.sleep(seconds)
    return advance


@pytest.fixture
def message() -> Callable[..., JobMessage]:
    def build(function: str = "jobs", payload: Any = None, **fields: Any) -> JobMessage:
        return JobMessage(job_id=fields.pop("job_id", new_job_id()), function=function,
                          payload={"n": 1} if payload is None else payload, trace_id=new_trace_id(),
                          parent_span_id=new_span_id(), request_id=fields.pop("request_id", "req-1"),
                          enqueued_at_us=now_us(), **fields)
    return build
