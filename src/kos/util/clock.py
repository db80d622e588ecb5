"""Time as an injected dependency.

Every timer path in kos takes a `Clock` so that tests can drive time by hand
(`kos.testing.clock.FakeClock`) instead of sleeping. Wall time (`now`) stamps
objects; monotonic time (`monotonic`) measures durations and schedules retries.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Protocol

UTC = datetime.UTC


class Clock(Protocol):
    def now(self) -> datetime.datetime:
        """The current wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for `seconds` of this clock's time."""
        ...


class RealClock:
    """The system clocks."""

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


REAL_CLOCK = RealClock()
