"""Retry delays: exponential, linear or fixed from ``retry.base_ms``, with full jitter, capped.

Full jitter (a uniform draw between 0 and the computed delay) spreads the retries
of jobs that failed together, e.g. when a shared dependency was down, so they do
not come back as one wave. The cap is 15 minutes: the longest delay SQS allows
(``DelaySeconds``) and well under the 12-hour visibility limit.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from functions.shared.manifest import Retry


MAX_DELAY_S = 900.0


class Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def ceiling_delay_s(retry: Retry, attempt: int) -> float:
    """The delay before jitter after failed attempt number ``attempt`` (1-based)."""
    base = retry.base_ms / 1000.0
    n = max(1, attempt)
    if retry.backoff == "exponential":
        # 2 ** 30 * base already exceeds the cap for any base >= 1 µs; avoids huge floats.
        delay = base * (2 ** min(n - 1, 30))
    elif retry.backoff == "linear":
        delay = base * n
    else:
        delay = base
    return min(delay, MAX_DELAY_S)


def retry_delay_s(retry: Retry, attempt: int, rng: Uniform | None = None) -> float:
    """The jittered delay after failed attempt ``attempt``: uniform in [0, ceiling]."""
    ceiling = ceiling_delay_s(retry, attempt)
    draw = (rng or random).uniform(0.0, ceiling)
    return min(max(draw, 0.0), ceiling)
