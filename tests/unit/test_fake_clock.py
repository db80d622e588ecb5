"""The fake clock: time moves only in `advance`, which fires timers in due order and lets woken tasks run.

And the real clock: its methods are the functions they stand for, so hot paths pay nothing for the injection.
"""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest

from kos.testing.clock import EPOCH, FakeClock
from kos.util.clock import REAL_CLOCK, RealClock


async def test_time_stands_still_until_advanced_and_wall_time_follows() -> None:
    clock = FakeClock(start=50.0)
    assert clock.monotonic() == 50.0 and clock.now() == EPOCH
    await asyncio.sleep(0)
    assert clock.monotonic() == 50.0
    await clock.advance(2.5)
    assert clock.monotonic() == 52.5
    assert clock.now() == EPOCH + datetime.timedelta(seconds=2.5)
    with pytest.raises(ValueError):
        await clock.advance(-1)


async def test_sleepers_wake_in_due_order_at_their_due_time() -> None:
    clock = FakeClock(start=0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0)]]
    await clock.advance(1.5)
    assert woke == [("a", 1.0), ("a2", 1.0)]  # ties wake in the order they went to sleep
    await clock.advance(10)
    assert woke == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.monotonic() == 11.5
    await asyncio.gather(*tasks)


async def test_a_periodic_loop_runs_once_per_period_within_one_advance() -> None:
    clock = FakeClock(start=0.0)
    ticks: list[float] = []

    async def loop() -> None:
        while True:
            await clock.sleep(1.0)
            ticks.append(clock.monotonic())

    task = asyncio.create_task(loop())
    await clock.advance(10)
    assert ticks == [float(i) for i in range(1, 11)]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert clock.pending == 0  # the cancelled sleep took its timer with it


async def test_call_later_and_cancel() -> None:
    clock = FakeClock(start=0.0)
    calls: list[tuple[str, float]] = []
    clock.call_later(2, lambda: calls.append(("two", clock.monotonic())))
    dropped = clock.call_later(1, lambda: calls.append(("one", clock.monotonic())))
    clock.call_later(-5, lambda: calls.append(("now", clock.monotonic())))  # a past delay is due at once
    assert clock.pending == 3 and clock.next_due() == 0.0
    dropped.cancel()
    await clock.advance(0)
    assert calls == [("now", 0.0)]
    assert clock.next_due() == 2.0
    await clock.advance(5)
    assert calls == [("now", 0.0), ("two", 2.0)] and clock.pending == 0 and clock.next_due() is None


async def test_sleep_of_nothing_returns_without_time_moving() -> None:
    clock = FakeClock()
    await asyncio.wait_for(clock.sleep(0), 1)
    assert clock.pending == 0


async def test_timers_scheduled_by_a_fired_timer_fire_within_the_same_advance() -> None:
    clock = FakeClock(start=0.0)
    seen: list[float] = []

    def chain(n: int) -> None:
        seen.append(clock.monotonic())
        if n:
            clock.call_later(0.5, chain, n - 1)

    clock.call_later(0.5, chain, 3)
    await clock.advance(1.6)
    assert seen == [0.5, 1.0, 1.5]
    await clock.advance(0.4)
    assert seen == [0.5, 1.0, 1.5, 2.0]


async def test_the_real_clock_is_the_functions_it_stands_for() -> None:
    assert RealClock.monotonic is time.monotonic and RealClock.sleep is asyncio.sleep
    assert REAL_CLOCK.now().tzinfo is datetime.UTC
    fired = asyncio.Event()
    never = asyncio.Event()
    REAL_CLOCK.call_later(0, fired.set)
    REAL_CLOCK.call_later(0, never.set).cancel()  # the loop's own timer handle
    await asyncio.wait_for(fired.wait(), 5)
    await asyncio.sleep(0)
    assert not never.is_set()
