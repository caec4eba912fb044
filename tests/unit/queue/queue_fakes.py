"""Pure fakes for the queue unit tests (imported by the tests; conftest.py puts this folder on sys.path): an in-memory JobQueue that records calls, a scripted invoker,
projects built without touching disk, and SQS events built from the real-shaped samples in events/."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from functions.queue_consumer.message import JobMessage, new_job_id
from functions.queue_consumer.ports import DlqEntry, JobQueue, QueueStats, ReceivedJob, SendResult
from functions.shared.context import CallContext
from functions.shared.errors import FunctionError
from functions.shared.ids import new_span_id, new_trace_id
from functions.shared.manifest import FunctionConfig, FunctionSpec, Project, ProjectConfig

EVENTS = Path(__file__).parent / "events"


class FakeQueue(JobQueue):
    """Records every settlement; ``done`` holds job ids acked (or pre-marked done)."""

    def __init__(self) -> None:
        self.sent: list[tuple[JobMessage, float]] = []
        self.calls: list[tuple[str, str, Any]] = []
        self.done: set[str] = set()
        self.keys: dict[tuple[str, str], str] = {}
        self.fail_sends = False

    def send(self, message: JobMessage, *, delay_s: float = 0) -> SendResult:
        if self.fail_sends:
            from functions.queue_consumer.errors import QueueUnavailable
            raise QueueUnavailable("queue down")
        if message.idempotency_key is not None:
            first = self.keys.setdefault((message.function, message.idempotency_key), message.job_id)
            if first != message.job_id:
                return SendResult(first, duplicate=True)
        self.sent.append((message, delay_s))
        return SendResult(message.job_id)

    def receive(self, *, max_messages: int = 10, visibility_timeout_s: float = 30,
                functions: Sequence[str] | None = None) -> list[ReceivedJob]:
        return []

    def ack(self, job: ReceivedJob) -> None:
        self.done.add(job.job_id)
        self.calls.append(("ack", job.job_id, None))

    def is_done(self, job_id: str) -> bool:
        return job_id in self.done

    def change_visibility(self, job: ReceivedJob, timeout_s: float) -> None:
        self.calls.append(("change_visibility", job.job_id, timeout_s))

    def retry_later(self, job: ReceivedJob, delay_s: float, error: str) -> None:
        self.calls.append(("retry_later", job.job_id, (delay_s, error)))

    def dead_letter(self, job: ReceivedJob, error: str) -> None:
        self.calls.append(("dead_letter", job.job_id, error))

    def release(self, job: ReceivedJob) -> None:
        self.calls.append(("release", job.job_id, None))

    def dlq_list(self, *, function: str | None = None, limit: int = 100) -> list[DlqEntry]:
        return []

    def dlq_replay(self, dlq_id: str) -> JobMessage:
        raise NotImplementedError

    def stats(self, functions: Sequence[str] | None = None) -> dict[str, QueueStats]:
        return {}

    def kinds(self, job_id: str) -> list[str]:
        return [kind for kind, jid, _ in self.calls if jid == job_id]


class ScriptedInvoker:
    """Fails a call when ``should_fail(payload, call)`` says so; records every call."""

    def __init__(self, should_fail: Callable[[Any], bool] = lambda payload: False) -> None:
        self.should_fail = should_fail
        self.calls: list[tuple[str, Any, CallContext, dict[str, Any] | None]] = []

    async def invoke(self, function: str, payload: Any, call: CallContext, *,
                     span_attrs: dict[str, Any] | None = None) -> Any:
        self.calls.append((function, payload, call, span_attrs))
        if self.should_fail(payload):
            raise FunctionError(f"{function} failed on {payload}")
        return {"ok": True}


def make_project(functions: dict[str, dict[str, Any]]) -> Project:
    specs = {}
    for name, raw in functions.items():
        config = FunctionConfig.model_validate(raw)
        specs[name] = FunctionSpec(name=name, directory=Path(f"/p/functions/{name}"),
                                   entry=Path(f"/p/functions/{name}/index.ts"), config=config,
                                   route=config.route or f"/{name}", method=config.method, auth="none",
                                   rate_limit=None)
    return Project(root=Path("/p"), config=ProjectConfig(name="unit"), functions=specs)


def job_message(function: str = "send_invoice", payload: Any = None, **fields: Any) -> JobMessage:
    return JobMessage(job_id=fields.pop("job_id", new_job_id()), function=function,
                      payload={"n": 1} if payload is None else payload, trace_id=fields.pop("trace_id", new_trace_id()),
                      parent_span_id=fields.pop("parent_span_id", new_span_id()), request_id="req",
                      enqueued_at_us=fields.pop("enqueued_at_us", 1_000_000), **fields)


def sqs_event(messages: list[JobMessage | str], *, fifo: bool = False, groups: list[str] | None = None,
              receive_count: int = 1) -> dict[str, Any]:
    """An SQS Lambda event with one record per message, shaped like the samples in events/."""
    sample = json.loads((EVENTS / ("sqs_fifo_batch.json" if fifo else "sqs_standard_batch.json")).read_text())
    template = sample["Records"][0]
    records = []
    for i, message in enumerate(messages):
        record = copy.deepcopy(template)
        record["messageId"] = f"{i:08d}-4cc7-4302-9e22-7cd8afdaadf5"
        record["receiptHandle"] = f"{template['receiptHandle'][:40]}{i}"
        record["body"] = message if isinstance(message, str) else message.to_json()
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        if fifo:
            record["attributes"]["MessageGroupId"] = (groups or [])[i]
            record["attributes"]["SequenceNumber"] = str(18849496460467696128 + i)
        records.append(record)
    return {"Records": records}
