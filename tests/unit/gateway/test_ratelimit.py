"""GCRA policy and the in-process limiter: exact admission counts, headers' numbers, and a model check."""

from __future__ import annotations

import threading
from fractions import Fraction

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from functions.gateway.ratelimit import Policy, RateDecision, gcra
from functions.gateway.ratelimit_local import LocalRateLimiter
from functions.shared.manifest import RateLimit

NS = 1_000_000_000


def test_policy_capacity_is_burst_or_requests() -> None:
    assert Policy.of(RateLimit(requests=20, per_seconds=60)) == Policy(interval_ns=3 * NS, capacity=20)
    assert Policy.of(RateLimit(requests=100, per_seconds=60, burst=20)).capacity == 20


def test_a_full_bucket_admits_exactly_capacity_at_one_instant() -> None:
    policy = Policy.of(RateLimit(requests=20, per_seconds=60))
    tat, now = None, 5 * NS
    decisions: list[RateDecision] = []
    for _ in range(25):
        decision, new_tat = gcra(tat, now, policy)
        decisions.append(decision)
        if new_tat is not None:
            tat = new_tat
    assert [d.allowed for d in decisions] == [True] * 20 + [False] * 5
    assert [d.remaining for d in decisions[:20]] == list(range(19, -1, -1))
    assert decisions[0].limit == 20
    assert decisions[0].reset_s == 3          # one request used: full again after one interval
    assert decisions[19].reset_s == 60        # empty: a whole window to refill
    assert decisions[20].retry_after_s == 3   # next token after one interval
    assert decisions[20].remaining == 0


def test_refusal_does_not_change_state() -> None:
    policy = Policy.of(RateLimit(requests=1, per_seconds=10))
    first, tat = gcra(None, 0, policy)
    assert first.allowed and tat == 10 * NS
    refused, new_tat = gcra(tat, NS, policy)
    assert not refused.allowed and new_tat is None
    assert refused.retry_after_s == 9


def test_retry_after_is_rounded_up_and_then_admits() -> None:
    clock_s = [100.0]
    limiter = LocalRateLimiter(clock=lambda: clock_s[0])
    limit = RateLimit(requests=3, per_seconds=10)  # one request per 3.33 s
    assert all(limiter.hit("k", limit).allowed for _ in range(3))
    refused = limiter.hit("k", limit)
    assert not refused.allowed
    assert refused.retry_after_s == 4  # 3.33 s rounded up
    clock_s[0] += refused.retry_after_s - 1
    assert not limiter.hit("k", limit).allowed
    clock_s[0] += 1
    assert limiter.hit("k", limit).allowed


def test_buckets_are_independent() -> None:
    limiter = LocalRateLimiter(clock=lambda: 0.0)
    limit = RateLimit(requests=2, per_seconds=60)
    assert [limiter.hit("a", limit).allowed for _ in range(3)] == [True, True, False]
    assert limiter.hit("b", limit).allowed


def test_full_buckets_are_pruned() -> None:
    now = [0.0]
    limiter = LocalRateLimiter(clock=lambda: now[0])
    limiter.prune_every = 10
    limit = RateLimit(requests=1, per_seconds=1)
    for i in range(9):
        limiter.hit(f"caller-{i}", limit)
    assert len(limiter) == 9
    now[0] = 5.0  # every bucket has refilled
    limiter.hit("late", limit)
    assert len(limiter) == 1


def test_local_limiter_is_exact_under_threads() -> None:
    limiter = LocalRateLimiter(clock=lambda: 1.0)
    limit = RateLimit(requests=20, per_seconds=60)
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def worker() -> None:
        barrier.wait()
        for _ in range(4):
            allowed = limiter.hit("same", limit).allowed
            with lock:
                results.append(allowed)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200
    assert results.count(True) == 20


class BucketModel(RuleBasedStateMachine):
    """LocalRateLimiter against the textbook token bucket, in exact fractions.

    Policies are drawn so the emission interval is a whole number of nanoseconds;
    then the two must agree on every decision, remaining count and retry delay.
    """

    @initialize(requests=st.sampled_from([1, 2, 4, 5, 8, 10, 20, 25, 50]),
                per_seconds=st.sampled_from([1, 2, 10, 60]),
                burst=st.one_of(st.none(), st.integers(1, 30)))
    def setup(self, requests: int, per_seconds: int, burst: int | None) -> None:
        self.limit = RateLimit(requests=requests, per_seconds=per_seconds, burst=burst)
        self.capacity = burst if burst is not None else requests
        self.rate_per_ns = Fraction(requests, per_seconds * NS)
        self.now_ns = 1_000 * NS
        self.limiter = LocalRateLimiter(clock=lambda: self.now_ns / NS)
        self.tokens: dict[str, Fraction] = {}
        self.seen: dict[str, int] = {}

    @rule(ms=st.integers(0, 5_000))
    def wait(self, ms: int) -> None:
        self.now_ns += ms * 1_000_000

    @rule(intervals=st.integers(1, 3), nudge_ns=st.sampled_from([-1, 0, 1]))
    def wait_to_a_boundary(self, intervals: int, nudge_ns: int) -> None:
        """Land exactly on, just before or just after a refill instant, where off-by-one bugs live."""
        self.now_ns += intervals * int(1 / self.rate_per_ns) + nudge_ns

    @rule(caller=st.sampled_from(["a", "b"]))
    def request(self, caller: str) -> None:
        tokens = self.tokens.get(caller, Fraction(self.capacity))
        elapsed = self.now_ns - self.seen.get(caller, self.now_ns)
        tokens = min(Fraction(self.capacity), tokens + elapsed * self.rate_per_ns)
        self.seen[caller] = self.now_ns
        expected_allowed = tokens >= 1
        if expected_allowed:
            tokens -= 1
        self.tokens[caller] = tokens
        decision = self.limiter.hit(caller, self.limit)
        assert decision.allowed == expected_allowed
        assert decision.remaining == int(tokens)  # floor of what is left
        if not expected_allowed:
            wait_ns = (1 - tokens) / self.rate_per_ns
            assert decision.retry_after_s == max(1, -(-wait_ns.numerator // (wait_ns.denominator * NS)))

    @invariant()
    def limit_is_capacity(self) -> None:
        if hasattr(self, "limit"):
            assert self.limiter.hit("__probe__" + str(self.now_ns), self.limit).limit == self.capacity


BucketModel.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_bucket_agrees_with_model = BucketModel.TestCase


@pytest.mark.parametrize("requests,per_seconds", [(7, 60), (3, 1), (1000, 1)])
def test_non_integer_intervals_still_admit_exactly_capacity(requests: int, per_seconds: int) -> None:
    limiter = LocalRateLimiter(clock=lambda: 42.0)
    limit = RateLimit(requests=requests, per_seconds=per_seconds)
    admitted = sum(limiter.hit("k", limit).allowed for _ in range(requests + 5))
    assert admitted == requests
