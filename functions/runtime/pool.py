"""A pool of warm Deno workers for one function.

Workers are started ahead of demand (``min_warm``) so that a request finds one
with the user module already loaded. A worker serves one invocation at a time;
when all are busy the pool grows up to ``max_workers`` and then callers wait.
A worker that crashed or was killed on timeout is dropped and replaced in the
background, so the next request is served by a healthy one.

A :class:`PoolPolicy` decides how eagerly the pool grows and whether it shrinks.
The default (the Lambda runtime's) grows at once and never shrinks. ``flux dev``
serves every function of a project from one machine, where each idle Deno worker
costs tens of MB: there a busy pool first waits a moment for a worker to come
back before starting another (a fast function rarely needs more than one), idle
workers past the first are retired after a few seconds, and the last one after a
longer quiet spell, so the pool may go to zero and its next request cold-starts.
Idle workers are reused last-in first-out, so under a steady load the workers
that are not needed stay idle and are the ones retired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from functions.runtime.errors import PoolBusy, WorkerStartFailed
from functions.runtime.worker import DenoWorker

_log = logging.getLogger("flux.runtime")


@dataclass(frozen=True)
class PoolPolicy:
    """How a pool grows and shrinks.

    ``grow_after_s``: when every worker is busy, how long a caller waits for one to be released before
    starting another (0: start one at once). ``surplus_idle_s``: an idle worker is retired after this long
    while the pool has others. ``idle_s``: the last worker is retired after this long (the pool goes to
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
                 acquire_timeout_s: float = 60.0, policy: PoolPolicy | None = None) -> None:
        """``acquire_timeout_s``: how long a request waits for a free worker (the function's timeout)."""
        self.name = name
        self.policy = policy or PoolPolicy()
        self._factory = factory
        self.min_warm = min_warm
        self.max_workers = max(max_workers, 1)
        self.acquire_timeout_s = acquire_timeout_s
        self._idle: list[DenoWorker] = []   # oldest release first; reused from the end
        self._idle_since: dict[DenoWorker, float] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._busy: set[DenoWorker] = set()
        self._starting = 0
        self._changed = asyncio.Condition()
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
        self.cold_starts = 0
        self.retired = 0

    @property
    def size(self) -> int:
        return len(self._idle) + len(self._busy) + self._starting

    async def warm(self) -> None:
        """Start workers until ``min_warm`` are idle (used at start and after reloads)."""
        needed = self.min_warm - self.size
        if needed > 0:
            await asyncio.gather(*(self._spawn_idle() for _ in range(needed)), return_exceptions=True)

    async def acquire(self, *, overflow: int = 0) -> tuple[DenoWorker, bool]:
        """An idle worker (and whether it had to be started for this call, i.e. a cold start).

        ``overflow`` lets a nested ``ctx.function.invoke`` start workers past ``max_workers``: its callers
        hold workers while they wait for it, so a full pool would otherwise deadlock until the timeout.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline, grow_at = now + self.acquire_timeout_s, now + self.policy.grow_after_s
        async with self._changed:
            while True:
                if self._closed:
                    raise WorkerStartFailed(f"the worker pool for {self.name} is closed")
                while self._idle:
                    worker = self._idle.pop()
                    self._idle_since.pop(worker, None)
                    if worker.alive:
                        self._busy.add(worker)
                        return worker, False
                now = loop.time()
                may_grow = self.size < self.max_workers + overflow
                if may_grow and (self.size == 0 or now >= grow_at):
                    self._starting += 1
                    break
                remaining = deadline - now
                if remaining <= 0:
                    raise PoolBusy(f"all {self.max_workers} workers of {self.name} stayed busy for "
                                   f"{self.acquire_timeout_s:.1f} s (timeout_ms)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, grow_at - now) if may_grow
                                           else remaining)
        try:
            worker = await self._start_worker()
        finally:
            async with self._changed:
                self._starting -= 1
                self._changed.notify_all()  # a failed start frees a slot others may be waiting for
        async with self._changed:
            if self._closed:  # closed (reload, shutdown) while this worker was starting
                await worker.kill()
                raise WorkerStartFailed(f"the worker pool for {self.name} was closed")
            self._busy.add(worker)
        self.cold_starts += 1
        return worker, True

    async def release(self, worker: DenoWorker) -> None:
        async with self._changed:
            self._busy.discard(worker)
            keep = worker.alive and not self._closed
            if keep:
                self._park(worker)
            self._changed.notify_all()
        if not keep:
            await worker.kill()
            if not self._closed:
                self._in_background(self.warm())

    async def close(self, *, drain: bool = False) -> None:
        """Stop the workers. With ``drain`` (hot reload) busy ones first finish their request and are
        stopped when released; without it (shutdown) they are stopped at once and their requests fail."""
        async with self._changed:
            self._closed = True
            workers = list(self._idle) if drain else [*self._idle, *self._busy]
            self._idle.clear()
            self._idle_since.clear()
            if not drain:
                self._busy.clear()
            self._changed.notify_all()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)

    async def _start_worker(self) -> DenoWorker:
        worker = self._factory()
        await worker.start()
        return worker

    async def _spawn_idle(self) -> None:
        async with self._changed:
            if self._closed or self.size >= self.max_workers:
                return
            self._starting += 1
        try:
            worker = await self._start_worker()
        except Exception:  # noqa: BLE001 - logged; the next acquire retries the start
            _log.exception("could not start a worker for %s", self.name)
            async with self._changed:
                self._starting -= 1
                self._changed.notify_all()
            return
        async with self._changed:
            self._starting -= 1
            if self._closed:
                await worker.kill()
                return
            self._park(worker)
            self._changed.notify_all()

    def _park(self, worker: DenoWorker) -> None:
        """An idle worker joins the pool (caller holds the lock); the reaper runs while any is idle."""
        self._idle.append(worker)
        self._idle_since[worker] = asyncio.get_running_loop().time()
        if self.policy.shrinks and (self._reaper is None or self._reaper.done()):
            self._reaper = asyncio.ensure_future(self._reap())
            self._background.add(self._reaper)
            self._reaper.add_done_callback(self._background.discard)

    async def _reap(self) -> None:
        """Retire workers that stayed idle past the policy's limits, until none is idle."""
        limits = [s for s in (self.policy.surplus_idle_s, self.policy.idle_s) if s is not None]
        interval = max(0.05, min(limits) / 4)
        while self._idle and not self._closed:
            await asyncio.sleep(interval)
            expired = self._expired(asyncio.get_running_loop().time())
            if expired:
                self.retired += len(expired)
                await asyncio.gather(*(w.kill() for w in expired), return_exceptions=True)

    def _expired(self, now: float) -> list[DenoWorker]:
        """Take the idle workers past their limit out of the pool, oldest first (no await: atomic)."""
        expired: list[DenoWorker] = []
        surplus, last = self.policy.surplus_idle_s, self.policy.idle_s
        for worker in list(self._idle):
            quiet = now - self._idle_since.get(worker, now)
            others = self.size - len(expired) > 1
            if (surplus is not None and others and quiet >= surplus) or (last is not None and quiet >= last):
                expired.append(worker)
        for worker in expired:
            self._idle.remove(worker)
            self._idle_since.pop(worker, None)
        return expired

    def _in_background(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)
