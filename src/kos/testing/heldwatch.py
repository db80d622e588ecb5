"""A store whose watch can be held: the late etcd watch of a replica, without waiting on real time.

Tests of the watch cache's freshness rules (kos.apiserver.cache, registry) need a cache that has *not* yet
applied a write the store acknowledged. `HeldWatch` wraps any Store: while `flowing` is clear, the batches of
every watch wait; everything else is the store's own. `revision_reads` counts `current_revision` calls (the
consistent reads, one etcd `Range` each), and `release_on_read` lets such a read release the watch, as a
real watch catches up while the reader waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kos.storage.interface import Event, Store


class HeldWatch:
    """`store` with its watches held while `flowing` is clear (set on construction)."""

    def __init__(self, store: Store, *, release_on_read: bool = False) -> None:
        self._store = store
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.release_on_read = release_on_read
        """Whether a `current_revision` call sets `flowing` (the cache then catches up while it waits)."""
        self.revision_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def current_revision(self) -> int:
        self.revision_reads += 1
        if self.release_on_read:
            self.flowing.set()
        return await self._store.current_revision()

    async def watch(self, prefix: str, after_revision: int) -> AsyncIterator[list[Event]]:
        async for batch in self._store.watch(prefix, after_revision):
            await self.flowing.wait()
            yield batch
