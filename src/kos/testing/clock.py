"""A clock that moves only when a test says so, for timers tested in milliseconds of real time.

`FakeClock` implements `kos.util.clock.Clock`. Its time stands still until `await clock.advance(s)`,
which moves it forward, firing every timer that falls due on the way in order of its due time (ties
in the order they were scheduled), with the time set to each timer's due time while it runs. After
each firing, and at the end, it lets the event loop run a few turns so tasks woken by a timer (a
`sleep` that ended, a future a callback resolved) run — and may schedule further timers, which fire
in the same `advance` if they fall due within it. So a loop that sleeps 1 s and does something runs
ten times in `advance(10)`, as it would in ten real seconds.

Why not a library: looptime (the well-kept one, from kopf) fakes the time of the whole event loop by
patching the selector-based loop; kos tests run on uvloop, whose timers live in libuv, and the
integration tests mix timers with real sockets whose timeouts must stay real. An injected clock fakes
only the timers a test means to drive (see docs/dependencies.md).
"""

from __future__ import annotations

import asyncio
import datetime
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from kos.util.clock import UTC

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=UTC)
"""Where a FakeClock's wall time starts unless told otherwise."""


class FakeTimer:
    """A callback scheduled on a `FakeClock`; `cancel()` before it falls due and it never runs."""

    __slots__ = ("args", "callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.due = due
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Monotonic time starting at `start` seconds, wall time at `wall` (UTC); both move only in `advance`.

    `settle_turns` is how many turns of the event loop `advance` grants after each firing: enough for
    a woken task to run a few awaits of already-resolved work; raise it for longer chains.
    """

    def __init__(self, start: float = 1000.0, wall: datetime.datetime = EPOCH, *, settle_turns: int = 10) -> None:
        self._mono = start
        self._start = start
        self._wall = wall
        self.settle_turns = settle_turns
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._seq = itertools.count()

    def now(self) -> datetime.datetime:
        return self._wall + datetime.timedelta(seconds=self._mono - self._start)

    def monotonic(self) -> float:
        return self._mono

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeTimer:
        timer = FakeTimer(self._mono + max(delay, 0.0), callback, args)
        heapq.heappush(self._timers, (timer.due, next(self._seq), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        """Return once `advance` has moved the clock `seconds` on (at once, after one turn, when `seconds` <= 0)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(seconds, _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()

    @property
    def pending(self) -> int:
        """Timers scheduled and neither fired nor cancelled (sleepers included)."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def next_due(self) -> float | None:
        """When the earliest pending timer falls due, or None."""
        self._drop_cancelled()
        return self._timers[0][0] if self._timers else None

    async def advance(self, seconds: float) -> None:
        """Move time `seconds` forward, firing what falls due on the way in order, letting woken tasks run."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._mono + seconds
        await self.settle()  # what the caller just started gets to schedule its timers first
        while True:
            self._drop_cancelled()
            if not self._timers or self._timers[0][0] > target:
                break
            due, _, timer = heapq.heappop(self._timers)
            self._mono = max(self._mono, due)
            timer.callback(*timer.args)
            await self.settle()
        self._mono = target
        await self.settle()

    async def settle(self) -> None:
        """Let the event loop run `settle_turns` turns without moving time."""
        for _ in range(self.settle_turns):
            await asyncio.sleep(0)

    def _drop_cancelled(self) -> None:
        t = self._timers
        while t and t[0][2].cancelled:
            heapq.heappop(t)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
