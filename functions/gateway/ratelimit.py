"""Rate limiting: the GCRA policy as a pure function, and the limiter port.

Policy. A flux.json ``rate_limit`` ``{"requests": R, "per_seconds": P, "burst": B}``
is a token bucket of capacity ``B`` (``R`` when no burst is given) refilled at
``R / P`` requests per second. It is computed as GCRA (the generic cell rate
algorithm), which stores one number per bucket — the *theoretical arrival
time* (TAT) — instead of a token count and a timestamp, so a distributed store
needs one conditional write per admitted request and none per refused one:
refusing never changes the state, and the TAT only ever grows, so a refusal
based on a slightly stale read is still correct.

All arithmetic is in integer nanoseconds: with floats, the 20th of 20 requests
arriving at the same instant can land a rounding error on the wrong side of
the limit.

Headers (DESIGN §4): ``RateLimit-Limit`` is the bucket capacity,
``RateLimit-Remaining`` the whole requests left now, ``RateLimit-Reset`` the
seconds until the bucket is full again, and a refusal's ``Retry-After`` the
seconds until the next request will be admitted (all rounded up).

Store failure. :class:`RateLimiter` adapters raise :class:`RateLimitStoreError`
when their store fails, and the authorizer then *fails open*: it admits the
request, reports ``ratelimit_outcome: "store_error"`` and logs a warning. The
limiter protects capacity, not identity — authentication has already been
decided — and a DynamoDB hiccup should not turn every API into a 5xx. API
Gateway's stage throttling remains as a coarse backstop while the store is down.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from functions.shared.manifest import RateLimit


_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Policy:
    """A rate limit in the units GCRA needs: emission interval and capacity."""

    interval_ns: int
    capacity: int

    @classmethod
    def of(cls, limit: RateLimit) -> Policy:
        capacity = limit.burst if limit.burst is not None else limit.requests
        return cls(interval_ns=max(1, limit.per_seconds * _NS // limit.requests), capacity=capacity)

    @property
    def tolerance_ns(self) -> int:
        return self.interval_ns * self.capacity


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int = 0


def gcra(tat_ns: int | None, now_ns: int, policy: Policy) -> tuple[RateDecision, int | None]:
    """Decide one request. Returns the decision and the new TAT to store (None when refused)."""
    tat = now_ns if tat_ns is None else max(tat_ns, now_ns)
    new_tat = tat + policy.interval_ns
    allow_at = new_tat - policy.tolerance_ns
    if now_ns < allow_at:
        decision = RateDecision(allowed=False, limit=policy.capacity, remaining=0,
                                reset_s=_ceil_s(tat - now_ns), retry_after_s=max(1, _ceil_s(allow_at - now_ns)))
        return decision, None
    remaining = (policy.tolerance_ns - (new_tat - now_ns)) // policy.interval_ns
    return RateDecision(allowed=True, limit=policy.capacity, remaining=int(remaining),
                        reset_s=_ceil_s(new_tat - now_ns)), new_tat


def _ceil_s(ns: int) -> int:
    return max(0, -(-ns // _NS))


class RateLimiter(ABC):
    """Port: one ``hit`` per request against the bucket ``key``.

    Raises :class:`functions.gateway.errors.RateLimitStoreError` when the store
    fails; the caller decides what that means (the authorizer fails open).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def now_ns(self) -> int:
        return round(self.clock() * _NS)

    @abstractmethod
    def hit(self, key: str, limit: RateLimit) -> RateDecision: ...
