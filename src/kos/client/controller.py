"""The controller loop every kos controller shares: informers → queue → N workers → sync(key).

Level-triggered, after client-go's sample-controller: event handlers only add
a key; a worker syncs the key against the *current* cached state. A sync that
raises is retried with the queue's per-item backoff; one that returns resets
the backoff. Workers start once every informer has synced.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Any

from kos.api.errors import StatusError
from kos.client.informer import Informer
from kos.client.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)


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
        log.info("%s: %d workers started", self.name, self.workers)

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
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except RetrySoon as e:
                log.debug("%s: %s: retrying soon: %s", self.name, key, e)
                self.queue.add_after(key, e.delay)
            except Retry as e:
                log.debug("%s: %s: retrying: %s", self.name, key, e)
                self.queue.add_rate_limited(key)
            except StatusError as e:
                log.info("%s: %s: %s; retrying", self.name, key, e)
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("%s: %s: sync failed; retrying", self.name, key)
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            self.queue.done(key)
