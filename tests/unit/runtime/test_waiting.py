"""settled_within: a deadline on a future that never cancels the future (what the pool and worker rely on)."""

from __future__ import annotations

import asyncio

import pytest

from functions.runtime.waiting import settled_within


def test_done_in_time_timed_out_and_never_cancelled() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        soon: asyncio.Future[int] = loop.create_future()
        loop.call_later(0.01, soon.set_result, 7)
        assert await settled_within(soon, 1.0) is True and soon.result() == 7
        never: asyncio.Future[int] = loop.create_future()
        assert await settled_within(never, 0.02) is False
        assert not never.done()  # the deadline passed; the future is left for its owner
        failed: asyncio.Future[int] = loop.create_future()
        failed.set_exception(RuntimeError("x"))
        assert await settled_within(failed, 0.0) is True

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_future_alone() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        watched: asyncio.Future[int] = loop.create_future()
        task = asyncio.ensure_future(settled_within(watched, 5.0))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not watched.done()
        watched.set_result(1)  # no callback of the cancelled wait is left to fail

    asyncio.run(scenario())
