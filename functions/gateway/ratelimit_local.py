"""In-process rate limiter for ``flux dev``.

In memory on purpose: ``flux dev`` is one process serving every request, so a
dict behind a lock is exact, costs about a microsecond, and needs no disk
write per request. Losing the buckets when the dev server restarts only
resets them to full, which is what an idle bucket becomes anyway. (In AWS many
Lambda instances share buckets, which is why that adapter is DynamoDB.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from functions.gateway.ratelimit import Policy, RateDecision, RateLimiter, gcra
from functions.shared.manifest import RateLimit


class LocalRateLimiter(RateLimiter):
    #: Every this many hits, buckets that have refilled completely are dropped
    #: (a full bucket and a missing one mean the same), so memory stays bounded
    #: by the callers active within one window.
    prune_every = 4096

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._tats: dict[str, int] = {}
        self._lock = threading.Lock()
        self._hits = 0

    def hit(self, key: str, limit: RateLimit) -> RateDecision:
        policy = Policy.of(limit)
        with self._lock:
            now = self.now_ns()
            decision, new_tat = gcra(self._tats.get(key), now, policy)
            if new_tat is not None:
                self._tats[key] = new_tat
            self._hits += 1
            if self._hits % self.prune_every == 0:
                self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
            return decision

    def __len__(self) -> int:
        return len(self._tats)
