"""A rate-limited work queue with client-go's semantics, on asyncio.

Controllers are level-triggered: event handlers only add a key; workers `get`
a key, reconcile the world toward the object's current state, and call `done`.
The queue guarantees what makes that safe with several workers:

- a key is never handed to two workers at once (the *processing* set);
- a key added while it is being processed is queued again after `done` (the
  *dirty* set), so no change is lost and none is processed twice concurrently;
- a key added several times before a worker takes it is processed once.

`add_after` delays an add; `add_rate_limited` delays it by the rate limiter's
verdict for that key (per-item exponential backoff, 200 ms → 8 h by default);
`forget` resets the key's backoff after a success. Every delay and every
duration the metrics report is on the queue's `Clock` (a fake one in tests).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from kos.client.ratelimit import ExponentialBackoff, RateLimiter
from kos.util.clock import REAL_CLOCK, Clock, Timer

K = TypeVar("K", bound=Hashable)


class QueueMetrics(Protocol):
    """What a queue reports; the default reports nothing (Prometheus is wired in by the process)."""

    def added(self) -> None: ...

    def depth(self, n: int) -> None: ...

    def queued_for(self, seconds: float) -> None: ...

    def worked_for(self, seconds: float) -> None: ...

    def retried(self) -> None: ...


class NoMetrics:
    def added(self) -> None:
        pass

    def depth(self, n: int) -> None:
        pass

    def queued_for(self, seconds: float) -> None:
        pass

    def worked_for(self, seconds: float) -> None:
        pass

    def retried(self) -> None:
        pass


class ShutDown(Exception):
    """The queue was shut down: workers should return."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter | None = None,
        metrics: QueueMetrics | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.name = name
        self.clock = clock
        self.rate_limiter: RateLimiter = rate_limiter or ExponentialBackoff()
        self.metrics: QueueMetrics = metrics or NoMetrics()
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._added_at: dict[K, float] = {}
        self._started_at: dict[K, float] = {}
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._delayed: dict[K, Timer] = {}
        self._delayed_at: dict[K, float] = {}
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self.metrics.added()
        self._dirty.add(key)
        self._added_at.setdefault(key, self.clock.monotonic())
        if key in self._processing:
            return  # re-queued by done()
        self._queue.append(key)
        self.metrics.depth(len(self._queue))
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    async def get(self) -> K:
        """The next key to work on; raises ShutDown once the queue is shut down and drained."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake_one()  # pass the wake-up on
                raise
        key = self._queue.popleft()
        self.metrics.depth(len(self._queue))
        now = self.clock.monotonic()
        added = self._added_at.pop(key, None)
        if added is not None:
            self.metrics.queued_for(now - added)
        self._processing.add(key)
        self._started_at[key] = now
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        started = self._started_at.pop(key, None)
        if started is not None:
            self.metrics.worked_for(self.clock.monotonic() - started)
        if key in self._dirty:
            self._queue.append(key)
            self.metrics.depth(len(self._queue))
            self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Add `key` once `delay` seconds (of the queue's clock) have passed; an earlier pending add wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        due = self.clock.monotonic() + delay
        existing = self._delayed_at.get(key)
        if existing is not None and existing <= due:
            return  # an earlier add is already scheduled
        if key in self._delayed:
            self._delayed[key].cancel()
        self._delayed_at[key] = due
        self._delayed[key] = self.clock.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._delayed.pop(key, None)
        self._delayed_at.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        self.metrics.retried()
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.num_requeues(key)

    def shut_down(self) -> None:
        self._shutting_down = True
        for h in self._delayed.values():
            h.cancel()
        self._delayed.clear()
        self._delayed_at.clear()
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)

    def processing(self) -> int:
        return len(self._processing)

    def oldest_processing_age(self) -> float:
        if not self._started_at:
            return 0.0
        return self.clock.monotonic() - min(self._started_at.values())
