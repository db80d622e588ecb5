"""The reflector: keep a local store equal to the server's view of a selection of objects.

List, then watch from the list's resourceVersion (or, with `streaming_list`, one
watch that starts with the current state and a bookmark marking its end — the
list and the watch in one request, as Kubernetes' watch-list). Every event moves the store
and the last seen revision forward; bookmarks move the revision forward too.
When the watch ends or the connection breaks, watch again from the last seen
revision (nothing is missed, nothing repeated). When the server answers 410
(that history is gone), list again and *replace* the store: objects that vanished
meanwhile are reported deleted with their last known state. The same when the
server answers 504 with the cause `ResourceVersionTooLarge`: our revision is
ahead of the server's, as after the server restarted on a fresh store (memory://)
or on an etcd restored from a backup; retrying that revision would wait forever,
so list again from the current state (client-go's isTooLargeResourceVersionError,
kubernetes #91073). Relists are always consistent reads (resourceVersion unset), so
a relist cannot be too large itself. Only the first list may be asked to be merely
not older than a revision the caller already saw (`min_resource_version`): the
apiserver then serves it from its watch cache without a quorum read of the store
(a consistent read costs an etcd `Range`), which suffices whenever the caller only
needs a view that includes what it saw — the watch that follows brings the rest.
Other `StatusError`s (a broken connection is a `ServiceUnavailable`) back off
exponentially with jitter, then watch again from the last seen revision — a streaming
list that breaks after its initial state included. Any other failure (a watch line that does not decode, an object of the wrong
shape, a bug) is logged with its traceback, backed off the same way, and followed by a
relist: the informer never stops silently with a frozen cache.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

from kos.api.errors import Gone, InternalError, ServiceUnavailable, StatusError, is_too_large_resource_version
from kos.client.indexer import Indexer, key_of
from kos.client.watchevents import ADDED, BOOKMARK, DELETED, MODIFIED, WatchEvent
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")

EventHandler = Callable[[str, Any, Any], None]
"""(event type, old object or None, new object or None): ADDED has no old, DELETED has no new."""


class ListWatcher(Protocol):
    """What a reflector needs from a client (`kos.client.rest.Client` has it; tests script it)."""

    async def list(
        self,
        cls: Any,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> tuple[list[Any], str]: ...

    def watch(
        self,
        cls: Any,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
        send_initial_events: bool = False,
    ) -> AsyncIterator[WatchEvent]: ...


class Reflector(Generic[T]):
    def __init__(
        self,
        client: ListWatcher,
        cls: type[T],
        store: Indexer[T],
        on_event: EventHandler,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        clock: Clock = REAL_CLOCK,
        name: str = "",
        watch_timeout: tuple[int, int] = (300, 600),
        max_backoff: float = 30.0,
        streaming_list: bool = False,
        min_resource_version: str = "",
    ) -> None:
        self.client = client
        self.cls = cls
        self.store = store
        self.on_event = on_event
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.clock = clock
        self.name = name or getattr(cls, "__name__", "objects")
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.streaming_list = streaming_list
        """List by a watch that starts with the current state (one request instead of two)."""
        self.min_resource_version = min_resource_version
        """The first list (or streaming list) is at least as new as this revision (Kubernetes'
        `resourceVersionMatch=NotOlderThan`) instead of consistent; used once, so a retry or relist after
        any failure is a consistent read ("" : the first list is consistent too)."""
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.relists = 0
        self.too_large_relists = 0
        """Relists because the server had not reached our revision (a replaced or restored store)."""
        self.failures = 0
        """Unexpected failures (not a StatusError: a malformed event line, a bug), each followed by a relist."""
        self.initial_backoff = 0.1
        """Seconds of the first backoff after a failure (doubled per failure up to `max_backoff`, ×0.5–1.5)."""
        self._backoff = self.initial_backoff
        self._listed = False
        """Whether the current streaming list has replaced the store (its initial state ended)."""

    async def run(self) -> None:
        """List and watch until cancelled. Never returns otherwise, and never fails: every failure is
        logged and followed by a resume, a relist, or a backoff (with jitter) and a relist."""
        need_list = True
        self._backoff = self.initial_backoff
        while True:
            try:
                if need_list and self.streaming_list:
                    self._listed = False
                    try:
                        await self._stream()  # returns once the stream ends after its initial state
                    finally:  # a stream that breaks after its initial state resumes, as a watch does
                        if self._listed:
                            need_list = False
                    continue
                if need_list:
                    await self._list_and_replace()
                    need_list = False
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("resourceVersion is too old; listing again", informer=self.name, rv=self.resource_version)
                need_list = True
            except StatusError as e:
                if is_too_large_resource_version(e) and not need_list:
                    log.info("resourceVersion is ahead of the server; listing again", informer=self.name,
                             rv=self.resource_version, error=e)  # fmt: skip
                    need_list = True
                    self.too_large_relists += 1
                    continue
                # the list itself failed: back off (a too-large answer to a consistent list would come again;
                # a first list at `min_resource_version` is retried as a consistent one)
                await self._back_off(f"watch failed ({e})")
            except Exception as e:  # a malformed event, an object that does not decode, a bug: start over
                log.warning("watch failed", informer=self.name, error_type=type(e).__name__, error=e, exc_info=True)
                need_list = True
                self.failures += 1
                await self._back_off("listing again")

    async def _watch(self) -> None:
        """Follow the watch from the last seen revision until the server ends it."""
        async for ev in self.client.watch(
            self.cls,
            self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            allow_bookmarks=True,
            timeout_seconds=random.randint(*self.watch_timeout),
        ):
            self._apply(ev.type, ev.object, ev.resource_version)
            self._backoff = self.initial_backoff

    async def _back_off(self, why: str) -> None:
        """Sleep the current backoff with jitter (×0.5–1.5), then double it up to `max_backoff`."""
        delay = self._backoff * (0.5 + random.random())
        log.info("backing off", informer=self.name, reason=why, retry_in_s=round(delay, 3))
        await self.clock.sleep(delay)
        self._backoff = min(self._backoff * 2, self.max_backoff)

    async def _stream(self) -> None:
        """A streaming list: collect the initial state up to the end bookmark, replace the store, then follow."""
        initial: list[Any] | None = []
        start, self.min_resource_version = self.min_resource_version, ""
        async for ev in self.client.watch(
            self.cls,
            self.namespace,
            resource_version=start,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=random.randint(*self.watch_timeout),
            send_initial_events=True,
        ):
            if initial is None:
                self._apply(ev.type, ev.object, ev.resource_version)
            elif ev.type == BOOKMARK:
                if ev.initial_events_end:
                    self._replace(initial, ev.resource_version)
                    self._listed = True
                    initial = None
            elif ev.type == ADDED:
                initial.append(ev.object)
            else:
                raise InternalError(f"{self.name}: a {ev.type} event inside a stream's initial state")
        if initial is not None:
            raise ServiceUnavailable(f"{self.name}: the stream ended before its initial state did")

    async def _list_and_replace(self) -> None:
        start, self.min_resource_version = self.min_resource_version, ""
        items, rv = await self.client.list(
            self.cls,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            resource_version=start,
        )
        self._replace(items, rv)

    def _replace(self, items: list[Any], rv: str) -> None:
        fresh = {key_of(o): o for o in items}
        for key in self.store.list_keys():
            if key not in fresh:
                old = self.store.delete(key)
                self.on_event(DELETED, old, None)
        for key, obj in fresh.items():
            old = self.store.get(key)
            if old is None:
                self.store.put(obj)
                self.on_event(ADDED, None, obj)
            elif old.metadata.resource_version != obj.metadata.resource_version:  # type: ignore[attr-defined]
                self.store.put(obj)
                self.on_event(MODIFIED, old, obj)
        self.resource_version = rv
        self.relists += 1
        self.synced.set()

    def _apply(self, typ: str, obj: Any, rv: str) -> None:
        if typ == BOOKMARK:
            self.resource_version = rv
            return
        key = key_of(obj)
        if typ == DELETED:
            old = self.store.delete(key)
            self.on_event(DELETED, old if old is not None else obj, None)
        else:
            old = self.store.put(obj)
            self.on_event(ADDED if old is None else MODIFIED, old, obj)
        self.resource_version = rv
