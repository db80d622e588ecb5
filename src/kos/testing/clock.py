"""A clock that moves only when a test says so (`kos.util.clock.Clock`).

Timers that wait minutes in production (an agent's VNI-watch linger, retry
back-offs) are tested by advancing this clock instead of sleeping: `advance`
moves monotonic and wall time together and wakes every `sleep` whose deadline
it passes, in deadline order, letting each woken task run before it returns.
"""

from __future__ import annotations

import asyncio
import datetime
import heapq
import itertools

from kos.util.clock import UTC


class FakeClock:
    def __init__(self, start: datetime.datetime | None = None) -> None:
        self._t = 0.0
        self._epoch = start or datetime.datetime(2024, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime.datetime:
        return self._epoch + datetime.timedelta(seconds=self._t)

    def monotonic(self) -> float:
        return self._t

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._t + max(0.0, seconds), next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """Tasks waiting in `sleep` (cancelled ones not counted)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking each sleeper it passes (and letting it run) on the way."""
        end = self._t + seconds
        while self._sleepers and self._sleepers[0][0] <= end:
            due, _, fut = heapq.heappop(self._sleepers)
            self._t = max(self._t, due)
            if not fut.done():
                fut.set_result(None)
                for _ in range(5):  # let the woken task run (and perhaps sleep again) before time moves on
                    await asyncio.sleep(0)
        self._t = end
