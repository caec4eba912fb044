"""DynamoDB adapter of :class:`JobStore`: idempotency keys, done marks, last errors, counters.

One table, partition key ``pk`` (string), TTL attribute ``expires_at`` (epoch seconds):

- ``idem#<function>#<key>`` → ``job_id``: written with ``attribute_not_exists(pk)``, so of two
  concurrent enqueues with the same key exactly one wins and the other learns the winner's id;
- ``job#<job_id>`` → ``state`` (``failed`` | ``done``), ``attempts``, ``last_error``, ``function``;
- ``stats#<function>`` → ``done`` and ``failed`` counters (atomic ``ADD``).

Idempotency keys and job records expire after ``retention_days`` (default 14, like spans).
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.queue_consumer.errors import QueueUnavailable
from functions.queue_consumer.ports import Counters, JobStatus, JobStore
from functions.shared.aws_errors import error_code

PK = "pk"
TTL_ATTRIBUTE = "expires_at"
# The table's key schema, read by the CDK stack (infra/constructs/tables.py) and by create_jobs_table, so the
# stack and this adapter cannot drift apart.
JOBS_TABLE: dict[str, Any] = {"partition_key": {"name": PK, "type": "S"}, "time_to_live_attribute": TTL_ATTRIBUTE}


def create_jobs_table(client: Any, name: str) -> None:
    """Create the table as the CDK stack does (used by tests and local tools)."""
    key = JOBS_TABLE["partition_key"]
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key["name"], "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key["name"], "AttributeType": key["type"]}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": JOBS_TABLE["time_to_live_attribute"]})


class DynamoJobStore(JobStore):
    def __init__(self, client: Any, table: str, *, retention_days: int = 14) -> None:
        self.client = client
        self.table = table
        self.retention_s = retention_days * 86_400

    def _expires(self) -> dict[str, str]:
        return {"N": str(int(time.time()) + self.retention_s)}

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(TableName=self.table, **kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise
            raise QueueUnavailable(f"job store {self.table}: {exc}") from exc
        except BotoCoreError as exc:
            raise QueueUnavailable(f"job store {self.table}: {exc}") from exc

    def claim_idempotency(self, function: str, key: str, job_id: str) -> str | None:
        pk = f"idem#{function}#{key}"
        try:
            self._call("put_item", Item={PK: {"S": pk}, "job_id": {"S": job_id}, TTL_ATTRIBUTE: self._expires()},
                       ConditionExpression="attribute_not_exists(pk)")
            return None
        except ClientError:
            item = self._call("get_item", Key={PK: {"S": pk}}, ConsistentRead=True).get("Item")
            return item["job_id"]["S"] if item else None

    def release_idempotency(self, function: str, key: str, job_id: str) -> None:
        try:
            self._call("delete_item", Key={PK: {"S": f"idem#{function}#{key}"}},
                       ConditionExpression="job_id = :j", ExpressionAttributeValues={":j": {"S": job_id}})
        except ClientError:
            return  # someone else holds it now: nothing of ours to undo

    def mark_done(self, job_id: str, function: str) -> None:
        try:
            self._call("update_item", Key={PK: {"S": f"job#{job_id}"}},
                       UpdateExpression="SET #s = :done, #f = :f, expires_at = :e",
                       ConditionExpression="attribute_not_exists(#s) OR #s <> :done",
                       ExpressionAttributeNames={"#s": "state", "#f": "function"},
                       ExpressionAttributeValues={":done": {"S": "done"}, ":f": {"S": function},
                                                  ":e": self._expires()})
        except ClientError:
            return  # already done: count it once
        self._add(function, "done")

    def record_failure(self, job_id: str, function: str, attempt: int, error: str) -> None:
        try:
            self._call("update_item", Key={PK: {"S": f"job#{job_id}"}},
                       UpdateExpression="SET #s = :failed, #f = :f, attempts = :a, last_error = :err, expires_at = :e",
                       ConditionExpression="attribute_not_exists(#s) OR #s <> :done",
                       ExpressionAttributeNames={"#s": "state", "#f": "function"},
                       ExpressionAttributeValues={":failed": {"S": "failed"}, ":done": {"S": "done"},
                                                  ":f": {"S": function}, ":a": {"N": str(attempt)},
                                                  ":err": {"S": error[:4000]}, ":e": self._expires()})
        except ClientError:
            return  # a late failure report of a job that has succeeded since: keep it done
        self._add(function, "failed")

    def get(self, job_id: str) -> JobStatus | None:
        item = self._call("get_item", Key={PK: {"S": f"job#{job_id}"}}, ConsistentRead=True).get("Item")
        if not item:
            return None
        return JobStatus(job_id=job_id, function=item.get("function", {}).get("S", ""),
                         state=item.get("state", {}).get("S", ""),
                         attempts=int(item.get("attempts", {}).get("N", "0")),
                         last_error=item.get("last_error", {}).get("S", ""))

    def counters(self, function: str) -> Counters:
        item = self._call("get_item", Key={PK: {"S": f"stats#{function}"}}).get("Item") or {}
        return Counters(done=int(item.get("done", {}).get("N", "0")), failed=int(item.get("failed", {}).get("N", "0")))

    def _add(self, function: str, counter: str) -> None:
        self._call("update_item", Key={PK: {"S": f"stats#{function}"}},
                   UpdateExpression="ADD #c :one", ExpressionAttributeNames={"#c": counter},
                   ExpressionAttributeValues={":one": {"N": "1"}})
