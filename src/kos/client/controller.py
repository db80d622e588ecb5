"""The controller loop every kos controller shares: informers → queue → N workers → sync(key).

Level-triggered, after client-go's sample-controller: event handlers only add
a key; a worker syncs the key against the *current* cached state. A sync that
raises is retried with the queue's per-item backoff; one that returns resets
the backoff. Workers start once every informer has synced.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kos.api.errors import StatusError
from kos.client.informer import Informer
from kos.client.workqueue import ShutDown, WorkQueue
from kos.util.log import get_logger

log = get_logger(__name__)


class Retry(Exception):
    """Sync again later, with backoff (a routine condition, logged quietly)."""


class RetrySoon(Exception):
    """Sync again after `delay` seconds without counting a failure (e.g. a lost optimistic-concurrency race)."""

    def __init__(self, why: str, delay: float = 0.05) -> None:
        super().__init__(why)
        self.delay = delay


class Controller(abc.ABC):
    name: str = "controller"

    def __init__(self, queue: WorkQueue[str], informers: list[Informer[Any]], workers: int) -> None:
        self.queue = queue
        self.informers = informers
        self.workers = workers
        self._tasks: list[asyncio.Task[None]] = []

    @abc.abstractmethod
    async def sync(self, key: str) -> None:
        """Converge the world toward the current state of `key`; raise to be retried with backoff."""

    async def start(self, *, sync_timeout: float | None = None) -> None:
        for inf in self.informers:
            inf.start()
        await asyncio.wait_for(asyncio.gather(*(inf.reflector.synced.wait() for inf in self.informers)), sync_timeout)
        self.on_synced()
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}"))
        log.info("workers started", controller=self.name, workers=self.workers)

    def on_synced(self) -> None:
        """Hook: called once every informer has synced, before the workers start."""

    async def stop(self) -> None:
        self.queue.shut_down()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for inf in self.informers:
            await inf.stop()

    async def _worker(self) -> None:
        await work(self.queue, self.sync, self.name)


async def work(
    queue: WorkQueue[str],
    sync: Callable[[str], Awaitable[None]],
    name: str,
    expected: tuple[type[BaseException], ...] = (),
) -> None:
    """One worker: take keys off `queue` and `sync` them until the queue shuts down.

    A key is forgotten (its backoff reset) after a clean sync; `RetrySoon` comes back after its delay;
    `Retry`, a server `StatusError` or one of the `expected` failures is retried with backoff; anything
    else is logged with its traceback and retried with backoff too. Every controller and the agent use it.
    """
    retried: tuple[type[BaseException], ...] = (StatusError, *expected)
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            await sync(key)
        except asyncio.CancelledError:
            queue.done(key)
            raise
        except RetrySoon as e:
            log.debug("retrying soon", controller=name, key=key, reason=e)
            queue.add_after(key, e.delay)
        except Retry as e:
            log.debug("retrying", controller=name, key=key, reason=e)
            queue.add_rate_limited(key)
        except retried as e:
            log.info("sync refused; retrying", controller=name, key=key, error=e)
            queue.add_rate_limited(key)
        except Exception:
            log.exception("sync failed; retrying", controller=name, key=key)
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
        queue.done(key)
