"""Waiting for a future with a deadline, without ``asyncio.wait_for``'s wrapping.

``asyncio.wait_for(asyncio.shield(f), t)`` (3.11) builds a shield future, a waiter future,
a timer and two callbacks per call, and every invocation and every pool wait made one:
about a tenth of the loop thread's time per request in the profile of bench/PROFILE.md
section 6. :func:`settled_within` does the same job with one future and one timer, and,
like ``shield``, never cancels the future it watches.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def settled_within(future: asyncio.Future[Any], timeout_s: float) -> bool:
    """Wait until ``future`` is done or ``timeout_s`` passed; True if it is done. ``future`` is never cancelled
    here (a caller cancelled while waiting gets CancelledError and leaves ``future`` as it is)."""
    if future.done():
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(max(0.0, timeout_s), wake)
    future.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
    return future.done()
