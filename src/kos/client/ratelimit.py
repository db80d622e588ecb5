"""Rate limiters: a token bucket for request QPS, and per-item exponential backoff for retries.

The work queue's default limiter is the original KOS's: per-item exponential
backoff from 200 ms doubling to 8 h, reset by `forget` (reference §3). `MaxOf`
combines limiters the way client-go's default controller limiter does.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from kos.util.clock import REAL_CLOCK, Clock


class TokenBucket:
    """`qps` tokens per second, at most `burst` saved up; `delay()` reserves a token and says how long to wait."""

    def __init__(self, qps: float, burst: int, clock: Clock = REAL_CLOCK) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("a token bucket needs qps > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def delay(self) -> float:
        now = self.clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    async def wait(self) -> None:
        d = self.delay()
        if d > 0:
            await self.clock.sleep(d)


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """Seconds to wait before retrying `item` (and count one more failure)."""
        ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ExponentialBackoff:
    def __init__(self, base: float = 0.2, cap: float = 8 * 3600.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self._failures.get(item, 0)
        self._failures[item] = n + 1
        if n > 64:
            return self.cap
        return float(min(self.cap, self.base * (2**n)))

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketLimiter:
    """An overall retry rate (shared by all items), as client-go's BucketRateLimiter."""

    def __init__(self, qps: float, burst: int, clock: Clock = REAL_CLOCK) -> None:
        self.bucket = TokenBucket(qps, burst, clock)

    def when(self, item: Hashable) -> float:
        return self.bucket.delay()

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOf:
    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)
