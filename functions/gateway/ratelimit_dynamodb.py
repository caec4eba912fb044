"""DynamoDB rate limiter: GCRA with optimistic concurrency (the ``RATE_LIMIT_TABLE`` of the AWS stack).

Table: partition key ``pk`` (string), TTL attribute ``expires_at``. One item per
bucket holds its TAT in integer nanoseconds.

Each request reads the item (strongly consistent), decides with :func:`gcra`,
and — only when admitting — writes the new TAT on the condition that the TAT
is still the one it read. A failed condition means another Lambda instance
admitted a request in between: re-read and decide again. Refusals never write,
so contention is bounded by the requests actually admitted. If the condition
keeps failing for ``max_attempts`` rounds (one caller bursting far beyond any
sane concurrency), the request is refused as limited: in that situation the
bucket is being drained faster than we can even record it.

An item expires (TTL) once its TAT has passed, because a bucket whose TAT is
in the past is full, exactly like a missing one; TTL deletion is lazy, so an
expired-but-present item is still read correctly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.gateway.errors import RateLimitStoreError
from functions.gateway.ratelimit import Policy, RateDecision, RateLimiter, gcra
from functions.shared.aws_errors import describe, error_code

if TYPE_CHECKING:
    from functions.shared.manifest import RateLimit

_NS = 1_000_000_000


class DynamoRateLimiter(RateLimiter):
    def __init__(self, table: str, client: Any | None = None, clock: Callable[[], float] = time.time,
                 *, max_attempts: int = 25, backoff_s: float = 0.002,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(clock)
        if client is None:
            from functions.shared.aws_clients import client as aws_client

            client = aws_client("dynamodb")
        self.table = table
        self.client = client
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.sleep = sleep

    def hit(self, key: str, limit: RateLimit) -> RateDecision:
        policy = Policy.of(limit)
        decision: RateDecision | None = None
        for attempt in range(self.max_attempts):
            now = self.now_ns()
            stored = self._read(key)
            decision, new_tat = gcra(stored, now, policy)
            if new_tat is None or self._write(key, stored, new_tat):
                return decision
            # Lost the race to another writer: jittered pause so the losers do not collide again in lockstep.
            self.sleep(random.uniform(0, self.backoff_s * (attempt + 1)))
        return RateDecision(allowed=False, limit=policy.capacity, remaining=0,
                            reset_s=decision.reset_s if decision else 0,
                            retry_after_s=max(1, -(-policy.interval_ns // _NS)))

    def _read(self, key: str) -> int | None:
        try:
            response = self.client.get_item(TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True,
                                            ProjectionExpression="tat")
        except (ClientError, BotoCoreError) as exc:
            raise RateLimitStoreError(f"rate-limit store read failed: {describe(exc)}") from exc
        item = response.get("Item")
        return int(item["tat"]["N"]) if item and "tat" in item else None

    def _write(self, key: str, expected: int | None, new_tat: int) -> bool:
        """Conditional put; False when someone else changed the bucket since we read it."""
        item = {"pk": {"S": key}, "tat": {"N": str(new_tat)}, "expires_at": {"N": str(-(-new_tat // _NS) + 1)}}
        if expected is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {"ConditionExpression": "tat = :expected",
                         "ExpressionAttributeValues": {":expected": {"N": str(expected)}}}
        try:
            self.client.put_item(TableName=self.table, Item=item, **condition)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise RateLimitStoreError(f"rate-limit store write failed: {describe(exc)}") from exc
        except BotoCoreError as exc:
            raise RateLimitStoreError(f"rate-limit store write failed: {exc}") from exc
        return True
