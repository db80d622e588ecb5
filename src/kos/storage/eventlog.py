"""An in-process change log with watch fan-out, shared by the memory and SQLite backends.

The log keeps the most recent events in memory (bounded), fans every published
batch out to subscribed watchers, and replays history for a watch that starts in
the past — from memory, or from the backend's durable log through `older` when
the in-memory window does not reach back far enough.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
from collections.abc import AsyncIterator, Awaitable, Callable

from kos.storage.interface import Compacted, Event, Unavailable, WatchLagging

OlderEvents = Callable[[int, int], Awaitable[list[Event]]]
"""(after, upto) → the events with after < revision <= upto, from a durable log; raises Compacted."""


class _Subscriber:
    __slots__ = ("closed", "lagging", "limit", "pending", "prefix", "wakeup")

    def __init__(self, prefix: str, limit: int) -> None:
        self.prefix = prefix
        self.pending: collections.deque[Event] = collections.deque()
        self.wakeup = asyncio.Event()
        self.limit = limit
        self.lagging = False
        self.closed = False

    def offer(self, events: list[Event]) -> None:
        if self.lagging:
            return
        p = self.prefix
        for e in events:
            if e.key.startswith(p):
                self.pending.append(e)
        if len(self.pending) > self.limit:
            self.lagging = True
            self.pending.clear()
        self.wakeup.set()


class EventLog:
    def __init__(self, *, revision: int, capacity: int = 100_000, subscriber_limit: int = 1_000_000) -> None:
        self.revision = revision
        """The last published revision."""
        self.floor = revision
        """Every event with revision > floor is in memory."""
        self._events: list[Event] = []
        self._revs: list[int] = []
        self._capacity = capacity
        self._subscriber_limit = subscriber_limit
        self._subscribers: set[_Subscriber] = set()
        self._closed = False

    def publish(self, events: list[Event]) -> None:
        if not events:
            return
        self._events.extend(events)
        self._revs.extend(e.revision for e in events)
        self.revision = events[-1].revision
        if len(self._events) > 2 * self._capacity:
            self._trim(len(self._events) - self._capacity)
        for s in self._subscribers:
            s.offer(events)

    def _trim(self, n: int) -> None:
        if n <= 0:
            return
        self.floor = max(self.floor, self._revs[n - 1])
        del self._events[:n]
        del self._revs[:n]

    def compact(self, revision: int) -> None:
        """Forget events with revision <= `revision`."""
        self._trim(bisect.bisect_right(self._revs, revision))
        self.floor = max(self.floor, min(revision, self.revision))

    def close(self) -> None:
        self._closed = True
        for s in self._subscribers:
            s.closed = True
            s.wakeup.set()

    async def watch(self, prefix: str, after: int, *, older: OlderEvents | None = None) -> AsyncIterator[list[Event]]:
        if self._closed:
            raise Unavailable("store is closed")
        sub = _Subscriber(prefix, self._subscriber_limit)
        self._subscribers.add(sub)
        try:
            upto = self.revision
            if after < upto:
                replay: list[Event] = []
                if after < self.floor:
                    if older is None:
                        raise Compacted(after, self.floor)
                    replay = await older(after, self.floor)
                start = bisect.bisect_right(self._revs, after)
                stop = bisect.bisect_right(self._revs, upto)
                replay += self._events[start:stop]
                replay = [e for e in replay if e.key.startswith(prefix)]
                for i in range(0, len(replay), 1000):
                    yield replay[i : i + 1000]
            while True:
                if not sub.pending:
                    if sub.closed:
                        raise Unavailable("store is closed")
                    sub.wakeup.clear()
                    await sub.wakeup.wait()
                if sub.lagging:
                    raise WatchLagging(f"watcher of {prefix!r} fell more than {sub.limit} events behind")
                if sub.pending:
                    batch = list(sub.pending)
                    sub.pending.clear()
                    yield batch
        finally:
            self._subscribers.discard(sub)
