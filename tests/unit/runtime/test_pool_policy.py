"""WorkerPool growth and shrinking under a PoolPolicy, with fake workers (no Deno): the flux dev policy
retires idle workers and cold-starts the next one; the default (Lambda) policy grows at once and keeps them.
Workers run up to ``max_inflight`` invocations each: the pool fills the least-loaded one, grows only when all
are full, and stops a retiring worker once the invocations it holds are released."""

from __future__ import annotations

import asyncio

from functions.runtime.pool import PoolPolicy, WorkerPool


class FakeWorker:
    def __init__(self, n: int) -> None:
        self.n = n
        self.alive = False
        self.killed = False
        self.retiring: str | None = None

    @property
    def accepting(self) -> bool:
        return self.alive and self.retiring is None

    def retire(self, reason: str) -> None:
        self.retiring = reason

    async def start(self) -> None:
        self.alive = True

    async def kill(self) -> None:
        self.alive, self.killed = False, True


def _pool(policy: PoolPolicy | None, *, max_workers: int = 4, max_inflight: int = 1,
          max_concurrent: int | None = None) -> tuple[WorkerPool, list[FakeWorker]]:
    made: list[FakeWorker] = []

    def factory() -> FakeWorker:
        made.append(FakeWorker(len(made)))
        return made[-1]

    return WorkerPool("f", factory, min_warm=1, max_workers=max_workers, acquire_timeout_s=2.0,  # type: ignore[arg-type]
                      policy=policy, max_inflight=max_inflight, max_concurrent=max_concurrent), made


def test_idle_workers_are_retired_to_zero_and_the_next_request_cold_starts() -> None:
    async def scenario() -> None:
        pool, made = _pool(PoolPolicy(surplus_idle_s=0.1, idle_s=0.4))
        await pool.warm()
        (a, cold_a), (b, cold_b) = await pool.acquire(), await pool.acquire()
        assert (cold_a, cold_b) == (False, True) and pool.size == 2
        await pool.release(a)
        await pool.release(b)
        await asyncio.sleep(0.25)
        assert pool.size == 1 and a.killed and not b.killed  # the surplus (oldest idle) one went first
        await asyncio.sleep(0.4)
        assert pool.size == 0 and b.killed and pool.retired == 2
        worker, cold = await pool.acquire()
        assert cold and worker is made[-1] and len(made) == 3
        await pool.release(worker)
        await pool.close()

    asyncio.run(scenario())


def test_a_busy_worker_is_not_retired() -> None:
    async def scenario() -> None:
        pool, _ = _pool(PoolPolicy(surplus_idle_s=0.05, idle_s=0.05))
        await pool.warm()
        worker, _ = await pool.acquire()
        await asyncio.sleep(0.2)
        assert pool.size == 1 and not worker.killed
        await pool.release(worker)
        await pool.close()

    asyncio.run(scenario())


def test_a_busy_pool_waits_grow_after_s_for_a_released_worker_before_starting_one() -> None:
    async def scenario() -> None:
        pool, made = _pool(PoolPolicy(grow_after_s=0.3))
        await pool.warm()
        first, _ = await pool.acquire()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: asyncio.ensure_future(pool.release(first)))
        again, cold = await pool.acquire()
        assert again is first and not cold and len(made) == 1
        started = loop.time()
        second, cold = await pool.acquire()   # nobody releases: a new worker after grow_after_s
        assert cold and second is made[-1] and len(made) == 2
        assert loop.time() - started >= 0.29
        await pool.close()

    asyncio.run(scenario())


def test_the_default_policy_grows_at_once_and_never_retires() -> None:
    async def scenario() -> None:
        pool, made = _pool(None)
        await pool.warm()
        first, _ = await pool.acquire()
        second, cold = await pool.acquire()
        assert cold and len(made) == 2
        await pool.release(first)
        await pool.release(second)
        await asyncio.sleep(0.2)
        assert pool.size == 2 and not any(w.killed for w in made) and pool.retired == 0
        await pool.close()

    asyncio.run(scenario())


def test_invocations_share_a_worker_up_to_max_inflight_then_the_pool_grows() -> None:
    async def scenario() -> None:
        pool, made = _pool(None, max_inflight=3)
        await pool.warm()
        held = [await pool.acquire() for _ in range(3)]
        assert {w for w, _ in held} == {made[0]} and not any(cold for _, cold in held) and len(made) == 1
        fourth, cold = await pool.acquire()          # the only worker is full: a second one starts
        assert cold and fourth is made[1] and pool.inflight == 4
        await pool.release(held[0][0])
        await pool.release(held[1][0])
        fifth, cold = await pool.acquire()           # both hold one now: equal load picks...
        assert not cold and pool.inflight == 3
        assert fifth is made[1]                      # ...the newest, so the older one can drain and retire
        await pool.close()

    asyncio.run(scenario())


def test_a_retiring_worker_takes_nobody_new_and_is_stopped_once_released() -> None:
    async def scenario() -> None:
        pool, made = _pool(None, max_inflight=4)
        await pool.warm()
        (a, _), (b, _) = await pool.acquire(), await pool.acquire()
        assert a is b is made[0]
        a.retire("post-return work outlived the grace period")
        c, cold = await pool.acquire()
        assert cold and c is made[1]                 # the retiring worker is full to newcomers
        await pool.release(a)
        assert not made[0].killed                    # still finishing its other invocation
        await pool.release(b)
        assert made[0].killed and pool.size == 1 and pool.retired == 1
        await pool.release(c)
        await pool.close()

    asyncio.run(scenario())


def test_a_dead_worker_is_dropped_at_its_first_release_and_replaced() -> None:
    async def scenario() -> None:
        pool, made = _pool(None, max_inflight=4)
        await pool.warm()
        (a, _), (b, _) = await pool.acquire(), await pool.acquire()
        a.alive = False                              # crashed (or killed on a timeout) with two in flight
        await pool.release(a)
        await asyncio.sleep(0.01)                    # the replacement warms in the background
        assert made[0].killed and len(made) == 2 and pool.size == 1
        await pool.release(b)                        # the sibling's release is harmless
        worker, cold = await pool.acquire()
        assert worker is made[1] and not cold
        await pool.release(worker)
        await pool.close()

    asyncio.run(scenario())


def test_callers_past_max_concurrent_wait_for_a_release_instead_of_growing_the_pool() -> None:
    async def scenario() -> None:
        pool, made = _pool(None, max_inflight=32, max_concurrent=2)
        await pool.warm()
        (a, _), (b, _) = await pool.acquire(), await pool.acquire()
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, lambda: asyncio.ensure_future(pool.release(a)))
        started = loop.time()
        c, cold = await pool.acquire()               # the function is at its concurrency: it waits its turn
        assert loop.time() - started >= 0.09 and not cold and c is made[0] and len(made) == 1
        await pool.release(b)
        await pool.release(c)
        await pool.close()

    asyncio.run(scenario())


def test_one_started_worker_serves_many_waiting_callers() -> None:
    async def scenario() -> None:
        pool, made = _pool(PoolPolicy(grow_after_s=0.05), max_inflight=4)
        await pool.warm()
        held = [await pool.acquire() for _ in range(4)]      # the first worker is full
        more = await asyncio.gather(*(pool.acquire() for _ in range(4)))
        assert len(made) == 2 and {w for w, _ in more} == {made[1]}  # not one new worker per waiting caller
        assert sum(cold for _, cold in more) == 1
        for worker, _ in held + list(more):
            await pool.release(worker)
        await pool.close()

    asyncio.run(scenario())


def test_a_release_hands_its_place_to_the_first_waiting_caller_only() -> None:
    async def scenario() -> None:
        pool, made = _pool(None, max_inflight=32, max_concurrent=1)
        await pool.warm()
        first, _ = await pool.acquire()
        waiting = [asyncio.ensure_future(pool.acquire()) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert not any(t.done() for t in waiting) and pool.inflight == 1
        await pool.release(first)
        await asyncio.sleep(0.01)
        assert [t.done() for t in waiting] == [True, False, False]   # first come, first served
        assert len(pool._waiters) == 2                               # the others were not woken to re-check
        for i in (1, 2):
            await pool.release(waiting[i - 1].result()[0])
            await asyncio.sleep(0.01)
            assert waiting[i].done()
        await pool.release(waiting[2].result()[0])
        assert pool.inflight == 0 and len(made) == 1
        await pool.close()

    asyncio.run(scenario())
