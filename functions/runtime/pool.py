"""A pool of warm Deno workers for one function, each running several invocations at once.

Workers are started ahead of demand (``min_warm``) so that a request finds one
with the user module already loaded. A worker runs up to ``max_inflight``
invocations concurrently (its bootstrap multiplexes them, like a Deno HTTP server
serves many requests); a request goes to the least-loaded worker that has room,
and the pool grows, up to ``max_workers``, only when every worker is full; then
callers wait. At most ``max_concurrent`` invocations run in the whole pool at once
(the function's ``concurrency``, as its reserved concurrency bounds it in AWS);
past that callers wait for one to finish rather than start a worker. A worker
that crashed or was killed on timeout is dropped and replaced in the background,
so the next request is served by a healthy one; a worker that *retires* (it may
still run abandoned work: see worker.py) takes no new invocation and is stopped
once the ones it holds are released.

A :class:`PoolPolicy` decides how eagerly the pool grows and whether it shrinks.
The default (the Lambda runtime's) grows at once and never shrinks. ``flux dev``
serves every function of a project from one machine, where each idle Deno worker
costs tens of MB: there a full pool first waits a moment for room in a worker
before starting another, idle workers (no invocation in flight) past the first are
retired after a few seconds, and the last one after a longer quiet spell, so the
pool may go to zero and its next request cold-starts. Among equally loaded workers
the newest is picked, so under a light load the others stay idle and are the ones
retired.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from functions.runtime.errors import PoolBusy, WorkerStartFailed
from functions.runtime.waiting import settled_within
from functions.runtime.worker import DenoWorker

_log = logging.getLogger("flux.runtime")
# Invocations one worker runs at once unless told otherwise (RuntimeOptions.max_inflight).
DEFAULT_MAX_INFLIGHT = 32


@dataclass(frozen=True)
class PoolPolicy:
    """How a pool grows and shrinks.

    ``grow_after_s``: when every worker is full, how long a caller waits for room in one before starting
    another (0: start one at once). ``surplus_idle_s``: a worker with nothing in flight is retired after this
    long while the pool has others. ``idle_s``: the last worker is retired after this long (the pool goes to
    zero). None: never.
    """

    grow_after_s: float = 0.0
    surplus_idle_s: float | None = None
    idle_s: float | None = None

    @property
    def shrinks(self) -> bool:
        return self.surplus_idle_s is not None or self.idle_s is not None


class WorkerPool:
    def __init__(self, name: str, factory: Callable[[], DenoWorker], *, min_warm: int = 1, max_workers: int = 4,
                 acquire_timeout_s: float = 60.0, policy: PoolPolicy | None = None,
                 max_inflight: int = DEFAULT_MAX_INFLIGHT, max_concurrent: int | None = None) -> None:
        """``acquire_timeout_s``: how long a request waits for room in a worker (the function's timeout).
        ``max_inflight``: invocations one worker runs at once; ``max_concurrent``: in the whole pool (None: no
        bound but ``max_workers * max_inflight``)."""
        self.name = name
        self.policy = policy or PoolPolicy()
        self._factory = factory
        self.min_warm = min_warm
        self.max_workers = max(max_workers, 1)
        self.max_inflight = max(max_inflight, 1)
        self.max_concurrent = max(max_concurrent or self.max_workers * self.max_inflight, 1)
        self._held = 0      # invocations in flight in the pool (a starting worker's first one included)
        self._waiting = 0   # callers in acquire
        self.acquire_timeout_s = acquire_timeout_s
        self._load: dict[DenoWorker, int] = {}      # started workers (oldest first) → invocations held
        self._idle_since: dict[DenoWorker, float] = {}  # those holding none, since when
        self._reaper: asyncio.Task[None] | None = None
        self._starting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()  # callers waiting for room, first come first
        self._woken = 0  # callers woken for a freed place that have not run yet: the place is theirs
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
        self.cold_starts = 0
        self.retired = 0

    @property
    def size(self) -> int:
        return len(self._load) + self._starting

    @property
    def inflight(self) -> int:
        """Invocations the pool's workers hold now (running, or settling their post-return work)."""
        return self._held

    async def warm(self) -> None:
        """Start workers until ``min_warm`` are there (used at start and after reloads)."""
        needed = self.min_warm - self.size
        if needed > 0:
            await asyncio.gather(*(self._spawn_idle() for _ in range(needed)), return_exceptions=True)

    async def acquire(self, *, overflow: int = 0) -> tuple[DenoWorker, bool]:
        """A worker with room for one more invocation (and whether it had to be started for this call, i.e.
        a cold start). Every acquire is paired with one :meth:`release`.

        ``overflow`` lets a nested ``ctx.function.invoke`` start workers past ``max_workers``: its callers
        hold room in workers while they wait for it, so a full pool would otherwise deadlock until the timeout.
        """
        # No lock anywhere: the event loop runs one thing at a time and nothing awaits between a check and a take.
        # A newcomer takes room only when nobody waits for it (callers woken for a freed place keep it).
        if not self._closed and not self._waiters and self._held + self._woken < self.max_concurrent + overflow:
            worker = self._least_loaded()
            if worker is not None:
                self._take(worker)
                return worker, False
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline, grow_at = now + self.acquire_timeout_s, now + self.policy.grow_after_s
        self._waiting += 1
        queued = bool(self._waiters)  # others wait already: behind them, first come first served
        try:
            while True:
                if self._closed:
                    raise WorkerStartFailed(f"the worker pool for {self.name} is closed")
                self._drop_unusable()
                may_grow = False
                if not queued and self._held + self._woken < self.max_concurrent + overflow:
                    worker = self._least_loaded()
                    if worker is not None:
                        self._take(worker)
                        return worker, False
                    now = loop.time()
                    # Grow once every worker is full, and not for callers a starting worker will take.
                    may_grow = self.size < self.max_workers + overflow \
                        and self._starting * self.max_inflight < self._waiting
                    if may_grow and (self.size == 0 or now >= grow_at):
                        self._starting += 1
                        self._held += 1  # this caller's place in the worker it starts
                        break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise PoolBusy(f"{self.name} stayed at its limit ({self.size} workers of "
                                   f"{self.max_inflight} invocations, {self.max_concurrent} at most in all) "
                                   f"for {self.acquire_timeout_s:.1f} s (timeout_ms)")
                await self._wait(max(0.0, min(remaining, grow_at - loop.time())) if may_grow else remaining)
                queued = False
        finally:
            self._waiting -= 1
        try:
            worker = await self._start_worker()
        except BaseException:
            self._starting -= 1
            self._held -= 1
            self._wake_all()  # a failed start frees a slot others may be waiting for
            raise
        self._starting -= 1
        if self._closed:  # closed (reload, shutdown) while this worker was starting
            self._held -= 1
            await worker.kill()
            raise WorkerStartFailed(f"the worker pool for {self.name} was closed")
        self._load[worker] = 1
        self._wake(self.max_inflight - 1)  # the new worker has room for others waiting too
        self.cold_starts += 1
        return worker, True

    async def release(self, worker: DenoWorker) -> None:
        """One invocation of ``worker`` is over (its post-return work included). A dead worker is dropped and
        replaced; a retiring one (or any, once the pool is closed) is stopped when it holds nothing more."""
        stop = False
        self._held -= 1
        if worker in self._load:
            self._load[worker] -= 1
            if not worker.alive:
                self._forget(worker)
                stop = True
            elif self._load[worker] <= 0:
                if worker.accepting and not self._closed:
                    self._idle_since[worker] = asyncio.get_running_loop().time()
                    self._start_reaper()
                else:
                    self._forget(worker)
                    stop = True
        elif not worker.alive:
            stop = True  # dropped already by another holder; the kill below is idempotent
        if stop:
            self._wake_all()  # one worker fewer: waiting callers may now start one
            if worker.alive:  # retired: it finished what it held
                self.retired += 1
            await worker.kill()
            if not self._closed:
                self._in_background(self.warm())
        else:
            self._wake(1)  # one place freed: one waiting caller, not all of them, re-checks

    async def close(self, *, drain: bool = False) -> None:
        """Stop the workers. With ``drain`` (hot reload) busy ones first finish their invocations and are
        stopped when released; without it (shutdown) they are stopped at once and their requests fail."""
        self._closed = True
        workers = [w for w, load in self._load.items() if load <= 0 or not drain]
        for worker in workers:
            self._forget(worker)
        self._wake_all()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)

    async def _wait(self, timeout_s: float) -> None:
        """Wait, first come first served, until woken (room may have been made) or ``timeout_s`` passes.

        One future per waiting caller instead of a Condition: a release wakes one caller, not every caller
        (64 connections on a function limited to 10 would otherwise wake 54 coroutines per release). A wake
        that reaches a caller being cancelled is passed on, so no place is left unclaimed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            if await settled_within(waiter, timeout_s):
                await waiter  # woken; or cancelled by close(), which cancels this caller as wait_for did
                self._woken -= 1
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._woken -= 1
                self._wake(1)
            raise
        finally:
            if not waiter.done():
                waiter.cancel()

    def _wake(self, count: int) -> None:
        while count > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._woken += 1
                count -= 1

    def _wake_all(self) -> None:
        self._wake(len(self._waiters))

    def _least_loaded(self) -> DenoWorker | None:
        """The accepting worker with the fewest invocations in flight and room for one more; the newest among
        equals (so older ones are left idle and retired first)."""
        best: DenoWorker | None = None
        for worker, load in self._load.items():
            if worker.accepting and load < self.max_inflight and (best is None or load <= self._load[best]):
                best = worker
        return best

    def _take(self, worker: DenoWorker) -> None:
        self._held += 1
        self._load[worker] += 1
        self._idle_since.pop(worker, None)

    def _forget(self, worker: DenoWorker) -> None:
        self._load.pop(worker, None)
        self._idle_since.pop(worker, None)

    def _drop_unusable(self) -> None:
        """Stop, in the background, workers that died or retired while holding nothing (no await: atomic)."""
        for worker in [w for w, load in self._load.items() if load <= 0 and not w.accepting]:
            self._forget(worker)
            if worker.alive:
                self.retired += 1
            self._in_background(worker.kill())

    async def _start_worker(self) -> DenoWorker:
        worker = self._factory()
        await worker.start()
        return worker

    async def _spawn_idle(self) -> None:
        if self._closed or self.size >= self.max_workers:
            return
        self._starting += 1
        try:
            worker = await self._start_worker()
        except Exception:  # noqa: BLE001 - logged; the next acquire retries the start
            _log.exception("could not start a worker for %s", self.name)
            self._starting -= 1
            self._wake_all()
            return
        self._starting -= 1
        if self._closed:
            await worker.kill()
            return
        self._load[worker] = 0
        self._idle_since[worker] = asyncio.get_running_loop().time()
        self._start_reaper()
        self._wake(self.max_inflight)

    def _start_reaper(self) -> None:
        """The reaper runs while any worker is idle (no await: atomic)."""
        if self.policy.shrinks and (self._reaper is None or self._reaper.done()):
            self._reaper = asyncio.ensure_future(self._reap())
            self._background.add(self._reaper)
            self._reaper.add_done_callback(self._background.discard)

    async def _reap(self) -> None:
        """Retire workers that stayed idle past the policy's limits, until none is idle."""
        limits = [s for s in (self.policy.surplus_idle_s, self.policy.idle_s) if s is not None]
        interval = max(0.05, min(limits) / 4)
        while self._idle_since and not self._closed:
            await asyncio.sleep(interval)
            expired = self._expired(asyncio.get_running_loop().time())
            if expired:
                self.retired += len(expired)
                await asyncio.gather(*(w.kill() for w in expired), return_exceptions=True)

    def _expired(self, now: float) -> list[DenoWorker]:
        """Take the idle workers past their limit out of the pool, oldest first (no await: atomic)."""
        expired: list[DenoWorker] = []
        surplus, last = self.policy.surplus_idle_s, self.policy.idle_s
        for worker, since in sorted(self._idle_since.items(), key=lambda item: item[1]):
            quiet = now - since
            others = self.size - len(expired) > 1
            if (surplus is not None and others and quiet >= surplus) or (last is not None and quiet >= last):
                expired.append(worker)
        for worker in expired:
            self._forget(worker)
        return expired

    def _in_background(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)
