"""`kos verify --watch SECONDS` follows for SECONDS of an injected clock: the helper that bounds the following.

It returns normally when the clock's time is up (cancelling the follower), passes on the follower's own
end or error, and a cancellation from outside stays a cancellation.
"""

from __future__ import annotations

import asyncio

import pytest

from kos.testing.clock import FakeClock
from kos.verify.history import run_for


async def forever(started: asyncio.Event) -> None:
    started.set()
    await asyncio.Event().wait()


async def test_it_ends_when_the_clocks_time_is_up() -> None:
    clock, started = FakeClock(), asyncio.Event()
    bounded = asyncio.create_task(run_for(clock, 4.0, forever(started)))
    await started.wait()
    await clock.advance(3.9)
    assert not bounded.done()
    await clock.advance(0.1)
    assert bounded.done() and bounded.exception() is None


async def test_the_followers_error_passes_and_an_outside_cancellation_stays_one() -> None:
    clock = FakeClock()

    async def broken() -> None:
        raise OSError("connection refused")

    with pytest.raises(OSError, match="refused"):
        await run_for(clock, 4.0, broken())
    started = asyncio.Event()
    bounded = asyncio.create_task(run_for(clock, 4.0, forever(started)))
    await started.wait()
    bounded.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded
    assert clock.pending == 0  # its timer went with it
