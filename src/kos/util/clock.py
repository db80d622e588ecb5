"""Time as an injected dependency.

Every timer in kos — work-queue delays and backoff, watch timeouts and bookmarks, cache waits,
garbage-collection and protection retries — reads a `Clock`, so that tests drive time by hand
(`kos.testing.clock.FakeClock`) instead of sleeping. Wall time (`now`) stamps objects; monotonic
time (`monotonic`) measures durations and schedules retries; `sleep` suspends a task and
`call_later` schedules a callback, both on monotonic time.

The protocol is asyncio's own vocabulary (`loop.call_later`, `asyncio.sleep`) so production code
reads the same as without it. `RealClock` hands the calls to the running loop and the `time`
module directly — `REAL_CLOCK.monotonic` *is* `time.monotonic` — so hot paths pay nothing for the
indirection.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any, Protocol

UTC = datetime.UTC


class Timer(Protocol):
    """A scheduled callback (`asyncio.TimerHandle` is one); `cancel()` stops it if it has not run."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime.datetime:
        """The current wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (the origin is arbitrary)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for `seconds` of this clock's time (at least one turn of the loop)."""
        ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Run `callback(*args)` on the running loop `delay` seconds of this clock's time from now.

        Must be called from the running loop's thread, as `loop.call_later`.
        """
        ...


def _now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def _call_later(delay: float, callback: Callable[..., object], *args: Any) -> Timer:
    return asyncio.get_running_loop().call_later(delay, callback, *args)


class RealClock:
    """The system clocks and the running event loop's timers.

    The methods are the underlying functions themselves (no bound-method frame), so a call through
    the clock costs what the direct call did.
    """

    now = staticmethod(_now)
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(asyncio.sleep)
    call_later = staticmethod(_call_later)


REAL_CLOCK: Clock = RealClock()
