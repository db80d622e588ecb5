"""Small asyncio pieces the server's background workers share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has finished, whatever it ended with (it is being shut down)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class UniqueQueue(Generic[K]):
    """A FIFO of keys in which a key waits at most once: putting a key already waiting does nothing.

    For level-triggered workers (the garbage collector, address protection): a key names what to
    look at, and whoever takes it looks at its current state, so one pending entry is enough.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: set[K] = set()

    def put(self, key: K) -> None:
        if key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    async def get(self) -> K:
        key = await self._queue.get()
        self._waiting.discard(key)
        return key

    def __len__(self) -> int:
        return len(self._waiting)
