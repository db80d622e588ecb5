"""The watch cache applies this server's own write at once when it is the next revision, and only then.

`Cacher.written`: a write whose revision follows the cache's is the only change at that revision, so the cache
applies it without waiting for the store watch, and drops its event when the watch delivers it. A write with an
undelivered revision before it waits for the watch, so events stay in revision order.
"""

from __future__ import annotations

import json

from kos.api import codec
from kos.api.meta import ObjectMeta
from kos.api.resources import NETWORK_ATTACHMENTS
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.apiserver.cache import Cacher
from kos.apiserver.deletion import DeleteRequest
from kos.apiserver.registry import Registry, WatchOptions
from kos.apiserver.strategy import for_plural
from kos.apiserver.watchers import Watcher
from kos.storage.memory import MemoryStore
from kos.testing.heldwatch import HeldWatch
from kos.util.clock import REAL_CLOCK

NS = "own"


def na(name: str) -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace=NS), spec=NetworkAttachmentSpec(node="n0", subnet="s1")
    )


def events(w: Watcher) -> list[tuple[str, str, str]]:
    out = []
    for line in b"".join(w.buffer).splitlines():
        ev = json.loads(line)
        out.append((ev["type"], ev["object"]["metadata"]["name"], ev["object"]["metadata"]["resourceVersion"]))
    return out


async def setup() -> tuple[MemoryStore, HeldWatch, Cacher, Registry, Watcher]:
    store = MemoryStore()
    held = HeldWatch(store)
    cacher = Cacher(held)  # type: ignore[arg-type]
    await cacher.start()
    reg = Registry(NETWORK_ATTACHMENTS, for_plural("networkattachments"), held, cacher, REAL_CLOCK)  # type: ignore[arg-type]
    w = await reg.watch(NS, WatchOptions(resource_version="0"))
    return store, held, cacher, reg, w


async def test_an_own_write_at_the_next_revision_is_applied_at_once_and_delivered_once() -> None:
    store, held, cacher, reg, w = await setup()
    held.flowing.clear()  # the store watch delivers nothing until the end
    created = await reg.create(NS, na("a"))
    assert cacher.revision == created.rev
    assert reg.cache.get(f"{NS}/a") is created
    gone, done = await reg.delete(NS, "a", DeleteRequest())
    assert done and cacher.revision == gone.rev and reg.cache.get(f"{NS}/a") is None
    assert events(w) == [("ADDED", "a", str(created.rev)), ("DELETED", "a", str(gone.rev))]
    # another writer's change, after the held events: once the watch flows, it alone is new
    other = await store.create(f"/networkattachments/{NS}/b", codec.encode(na("b")))
    held.flowing.set()
    await cacher.wait_for(other)
    assert events(w) == [("ADDED", "a", str(created.rev)), ("DELETED", "a", str(gone.rev)), ("ADDED", "b", str(other))]
    assert [ev.rev for ev in reg.cache.history] == [created.rev, gone.rev, other]
    await cacher.stop()


async def test_an_own_write_after_an_undelivered_revision_waits_for_the_store_watch() -> None:
    store, held, cacher, reg, w = await setup()
    held.flowing.clear()
    other = await store.create(f"/networkattachments/{NS}/b", codec.encode(na("b")))  # not yet in the cache
    created = await reg.create(NS, na("c"))
    assert created.rev == other + 1
    assert cacher.revision < other and reg.cache.get(f"{NS}/c") is None and events(w) == []
    held.flowing.set()
    await cacher.wait_for(created.rev)
    assert events(w) == [("ADDED", "b", str(other)), ("ADDED", "c", str(created.rev))]
    assert reg.cache.get(f"{NS}/c") is created  # the hint still spares decoding it
    await cacher.stop()
