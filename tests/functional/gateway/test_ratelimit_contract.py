"""Rate limiter adapters under contention: local and DynamoDB (moto) admit exactly the policy."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions.gateway.errors import RateLimitStoreError
from functions.gateway.ratelimit import RateLimiter
from functions.gateway.ratelimit_dynamodb import DynamoRateLimiter
from functions.gateway.ratelimit_local import LocalRateLimiter
from functions.shared.manifest import RateLimit

POLICY = RateLimit(requests=20, per_seconds=60)


@pytest.fixture(params=["local", "dynamodb"])
def limiter_and_clock(request: pytest.FixtureRequest, helpers: Any) -> tuple[RateLimiter, Any]:
    clock = helpers.FixedClock()
    if request.param == "local":
        return LocalRateLimiter(clock), clock
    client = request.getfixturevalue("dynamodb")
    request.getfixturevalue("linearizable_moto")
    return DynamoRateLimiter("flux-ratelimit", client, clock), clock


def burst(limiter: RateLimiter, key: str, n: int) -> list[bool]:
    barrier = threading.Barrier(min(n, 50))

    def one(_: int) -> bool:
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        return limiter.hit(key, POLICY).allowed

    with ThreadPoolExecutor(max_workers=50) as pool:
        return list(pool.map(one, range(n)))


def test_200_concurrent_requests_admit_exactly_20(limiter_and_clock: tuple[RateLimiter, Any]) -> None:
    limiter, clock = limiter_and_clock
    results = burst(limiter, "create_order|key:a", 200)
    assert len(results) == 200
    assert results.count(True) == 20
    # another caller has its own bucket
    assert burst(limiter, "create_order|key:b", 25).count(True) == 20
    # after Retry-After the first caller gets in again
    refused = limiter.hit("create_order|key:a", POLICY)
    assert not refused.allowed and refused.retry_after_s == 3
    clock.advance(refused.retry_after_s)
    admitted = limiter.hit("create_order|key:a", POLICY)
    assert admitted.allowed and admitted.remaining == 0
    assert not limiter.hit("create_order|key:a", POLICY).allowed


def test_headers_numbers_agree_across_adapters(limiter_and_clock: tuple[RateLimiter, Any]) -> None:
    limiter, clock = limiter_and_clock
    first = limiter.hit("k", POLICY)
    assert (first.allowed, first.limit, first.remaining, first.reset_s) == (True, 20, 19, 3)
    clock.advance(1.5)
    second = limiter.hit("k", POLICY)
    assert (second.remaining, second.reset_s) == (18, 5)  # 19 + half a refilled token - 1, floored


def test_dynamodb_items_expire_when_the_bucket_is_full(dynamodb: Any, helpers: Any) -> None:
    clock = helpers.FixedClock(1_700_000_000.0)
    limiter = DynamoRateLimiter("flux-ratelimit", dynamodb, clock)
    limiter.hit("f|ip:1", POLICY)
    item = dynamodb.get_item(TableName="flux-ratelimit", Key={"pk": {"S": "f|ip:1"}})["Item"]
    assert int(item["tat"]["N"]) == 1_700_000_003 * 10**9
    assert int(item["expires_at"]["N"]) == 1_700_000_004


def test_dynamodb_store_failure_raises_store_error(aws_env: None) -> None:
    from moto import mock_aws

    with mock_aws():
        import boto3

        limiter = DynamoRateLimiter("missing-table", boto3.client("dynamodb", region_name="us-east-1"))
        with pytest.raises(RateLimitStoreError):
            limiter.hit("k", POLICY)


def test_dynamodb_endless_contention_refuses_rather_than_overadmits(dynamodb: Any, helpers: Any) -> None:
    """If every conditional write loses, the limiter gives up as 'limited' after max_attempts."""
    clock = helpers.FixedClock()
    limiter = DynamoRateLimiter("flux-ratelimit", dynamodb, clock, max_attempts=3, sleep=lambda s: None)
    writes = []
    original_put = dynamodb.put_item

    def racing_put(**kwargs: Any) -> Any:
        # another instance admits a request just before each of our writes
        other = int(clock() * 1e9) + 3 * 10**9 * (len(writes) + 1)
        writes.append(other)
        original_put(TableName="flux-ratelimit", Item={"pk": kwargs["Item"]["pk"], "tat": {"N": str(other)}})
        return original_put(**kwargs)

    limiter.client = type("C", (), {"get_item": dynamodb.get_item, "put_item": staticmethod(racing_put)})()
    decision = limiter.hit("k", POLICY)
    assert len(writes) == 3
    assert not decision.allowed and decision.retry_after_s == 3
