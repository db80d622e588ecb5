"""Coalescing concurrent calls into batches: the reason the OVS fabric is fast under load.

Starting an `ovs-ofctl` process costs ~10 ms whether it carries one flow or
thousands (ovs-datapath.md §3), and an OVSDB transaction with one port costs
almost as much as one with fifty. So every caller submits its item and awaits
its own result, while a single drain task runs one batch at a time: whatever was
submitted while a batch ran forms the next one. No timer is involved — an idle
fabric starts a lone call at once, a busy one amortises the process over every
caller that arrived meanwhile.

The batch function returns one outcome per item, in order: a value or an
exception. Attributing a failure to the item that caused it (rather than
failing everyone, or worse, nobody) is the batch function's job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """`await submit(item)` → its result; items submitted while a batch runs go together into the next one."""

    def __init__(
        self, run: Callable[[list[T]], Awaitable[list[R | BaseException]]], *, name: str, max_items: int = 0
    ) -> None:
        self._run = run
        self.name = name
        self.max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0
        """Batches run so far (for tests and benchmarks)."""
        self.items = 0

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name=f"batcher-{self.name}")
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            if self.max_items > 0:
                batch, self._pending = self._pending[: self.max_items], self._pending[self.max_items :]
            else:
                batch, self._pending = self._pending, []
            self.batches += 1
            self.items += len(batch)
            try:
                outcomes = await self._run([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"{self.name}: batch of {len(batch)} gave {len(outcomes)} outcomes")
            except asyncio.CancelledError:
                for _, fut in batch:
                    fut.cancel()
                raise
            except BaseException as e:  # the batch function itself failed: every member learns why
                outcomes = [e] * len(batch)
            for (_, fut), outcome in zip(batch, outcomes, strict=True):
                if fut.done():
                    continue  # its caller went away
                if isinstance(outcome, BaseException):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)

    async def close(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)
        for _, fut in self._pending:
            fut.cancel()
        self._pending = []
