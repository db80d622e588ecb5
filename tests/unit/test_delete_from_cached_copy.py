"""A delete works on the cached copy first (kube-apiserver's `cachedExistingObject`), never on a wrong version.

No consistent read (one etcd `Range`) precedes the delete of an object the cache holds; a stale cached copy is
a lost race that is judged again on a current one; an object the cache does not hold yet, a failed
precondition and a delete that would only mark the object ("already being deleted" here) are judged after the
cache caught up (`Cacher.sync`).
"""

from __future__ import annotations

import msgspec
import pytest

from kos.api import codec
from kos.api.errors import Conflict, NotFound
from kos.api.meta import ObjectMeta
from kos.api.resources import NETWORK_ATTACHMENTS
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.apiserver.cache import Cacher
from kos.apiserver.deletion import DeleteRequest
from kos.apiserver.registry import Registry
from kos.apiserver.strategy import for_plural
from kos.storage.memory import MemoryStore
from kos.testing.heldwatch import HeldWatch
from kos.util.clock import REAL_CLOCK

NS = "del"
KEY = f"/networkattachments/{NS}/x"


def na(labels: dict[str, str] | None = None, finalizers: tuple[str, ...] = ()) -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name="x", namespace=NS, labels=labels or {}, finalizers=finalizers),
        spec=NetworkAttachmentSpec(node="n0", subnet="s1"),
    )


async def setup() -> tuple[MemoryStore, HeldWatch, Cacher, Registry]:
    store = MemoryStore()
    held = HeldWatch(store, release_on_read=True)
    cacher = Cacher(held)  # type: ignore[arg-type]
    await cacher.start()
    reg = Registry(NETWORK_ATTACHMENTS, for_plural("networkattachments"), held, cacher, REAL_CLOCK)  # type: ignore[arg-type]
    return store, held, cacher, reg


async def create_cached(cacher: Cacher, reg: Registry, obj: NetworkAttachment) -> None:
    """Create `obj` through the registry and wait until the cache holds it."""
    entry = await reg.create(NS, obj)
    await cacher.wait_for(entry.rev)


async def another_servers_update(store: MemoryStore, reg: Registry, labels: dict[str, str]) -> int:
    """Relabel x in the store behind the cache's back (the watch is held): the cached copy is now stale."""
    cached = reg.cache.get(f"{NS}/x")
    assert cached is not None
    moved = msgspec.structs.replace(cached.obj, metadata=msgspec.structs.replace(cached.obj.metadata, labels=labels))
    return await store.update(KEY, codec.encode(codec.with_resource_version(moved, 0)), cached.rev)


async def test_deleting_a_cached_object_reads_no_revision_first() -> None:
    store, held, cacher, reg = await setup()
    await create_cached(cacher, reg, na())
    reads = held.revision_reads
    _, done = await reg.delete(NS, "x", DeleteRequest())
    assert done and held.revision_reads == reads
    assert await store.get(KEY) is None
    await cacher.stop()


async def test_a_stale_cached_copy_is_a_lost_race_and_the_current_version_is_deleted() -> None:
    store, held, cacher, reg = await setup()
    await create_cached(cacher, reg, na())
    held.flowing.clear()
    rev = await another_servers_update(store, reg, {"moved": "on"})
    held.release_on_read = False
    original = held._store.delete  # the first attempt's compare-and-swap fails; then let the cache catch up

    async def delete_then_flow(*args: object, **kwargs: object) -> object:
        try:
            return await original(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            held.flowing.set()

    held._store.delete = delete_then_flow  # type: ignore[method-assign]
    gone, done = await reg.delete(NS, "x", DeleteRequest())
    assert done and gone.obj.metadata.labels == {"moved": "on"} and gone.rev > rev
    assert await store.get(KEY) is None
    await cacher.stop()


async def test_a_precondition_is_judged_again_on_a_current_copy() -> None:
    store, held, cacher, reg = await setup()
    await create_cached(cacher, reg, na())
    held.flowing.clear()
    rev = await another_servers_update(store, reg, {"moved": "on"})
    # the client read x at `rev` from another server: right for the store, wrong for the stale cached copy
    gone, done = await reg.delete(NS, "x", DeleteRequest(resource_version=str(rev)))
    assert done and gone.obj.metadata.labels == {"moved": "on"}
    held.flowing.clear()
    await reg.create(NS, na())
    with pytest.raises(Conflict):  # a precondition that fails on the current copy too is still a Conflict
        await reg.delete(NS, "x", DeleteRequest(resource_version="1"))
    await cacher.stop()


async def test_an_object_the_cache_does_not_hold_yet_is_found_after_a_consistent_read() -> None:
    store, held, cacher, reg = await setup()
    held.flowing.clear()
    await store.create(KEY, codec.encode(na()))  # another server's create, not yet in this cache
    reads = held.revision_reads
    _, done = await reg.delete(NS, "x", DeleteRequest())
    assert done and held.revision_reads == reads + 1
    with pytest.raises(NotFound):
        await reg.delete(NS, "x", DeleteRequest())
    await cacher.stop()


async def test_already_being_deleted_is_judged_on_a_current_copy() -> None:
    store, held, cacher, reg = await setup()
    await create_cached(cacher, reg, na(finalizers=("hold",)))
    marked, done = await reg.delete(NS, "x", DeleteRequest())
    assert not done and marked.obj.metadata.deletion_timestamp is not None
    await cacher.wait_for(marked.rev)
    held.flowing.clear()
    await store.delete(KEY)  # another server completed the deletion; this cache still shows it held
    reads = held.revision_reads
    with pytest.raises(NotFound):  # not "still being deleted", from the stale copy
        await reg.delete(NS, "x", DeleteRequest())
    assert held.revision_reads == reads + 1
    await cacher.stop()
