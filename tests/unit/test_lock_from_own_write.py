"""Address protection finds a lock this server created a moment ago without reading the store.

The controller manager creates an IPLock and then writes the attachment's status naming it; when the create's
response comes back before its watch event, the watch cache does not hold the lock yet. The apiserver then uses
its own write of the lock (`Cacher.own_write`) instead of a store read (one etcd `Range`), and the status write's
guard on the lock's revision keeps the check exact: a lock deleted meanwhile still makes the status write fail.
A lock another server created is read from the store, as before.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from kos.api import codec, names
from kos.api.errors import Conflict
from kos.api.meta import ObjectMeta, OwnerReference
from kos.api.resources import IPLOCKS, NETWORK_ATTACHMENTS
from kos.api.types import (
    API_VERSION,
    IPLock,
    IPLockSpec,
    NetworkAttachment,
    NetworkAttachmentSpec,
    NetworkAttachmentStatus,
)
from kos.apiserver.address_protection import AddressBook, AttachmentStatusRule, LockDeletionRule
from kos.apiserver.cache import Cacher
from kos.apiserver.registry import Registry
from kos.apiserver.strategy import for_plural
from kos.storage.memory import MemoryStore
from kos.testing.heldwatch import HeldWatch
from kos.util.clock import REAL_CLOCK

NS = "own"
VNI, IP = 7, "10.0.0.5"
LOCK = names.lock_name(VNI, IP)


class CountingGets(HeldWatch):
    """HeldWatch that counts `get` calls (each one an etcd `Range` on the real store)."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store, release_on_read=True)
        self.gets = 0

    async def get(self, key: str) -> Any:
        self.gets += 1
        return await self._store.get(key)


async def setup() -> tuple[MemoryStore, CountingGets, Cacher, Registry, Registry]:
    store = MemoryStore()
    held = CountingGets(store)
    cacher = Cacher(held)  # type: ignore[arg-type]
    await cacher.start()
    book = AddressBook(cacher, held)  # type: ignore[arg-type]
    nas = Registry(NETWORK_ATTACHMENTS, for_plural("networkattachments"), held, cacher, REAL_CLOCK,  # type: ignore[arg-type]
                   rules=AttachmentStatusRule(book))  # fmt: skip
    locks = Registry(IPLOCKS, for_plural("iplocks"), held, cacher, REAL_CLOCK,  # type: ignore[arg-type]
                     rules=LockDeletionRule(book))  # fmt: skip
    return store, held, cacher, nas, locks


async def attachment(cacher: Cacher, nas: Registry) -> NetworkAttachment:
    e = await nas.create(NS, NetworkAttachment(metadata=ObjectMeta(name="a", namespace=NS),
                                               spec=NetworkAttachmentSpec(node="n0", subnet="s1")))  # fmt: skip
    await cacher.wait_for(e.rev)
    obj: NetworkAttachment = e.obj
    return obj


def lock_of(na: NetworkAttachment) -> IPLock:
    owner = OwnerReference(api_version=API_VERSION, kind="NetworkAttachment", name=na.metadata.name,
                           uid=na.metadata.uid, controller=True)  # fmt: skip
    return IPLock(metadata=ObjectMeta(name=LOCK, namespace=NS, owner_references=[owner]), spec=IPLockSpec("s1"))


def showing(na: NetworkAttachment, lock_uid: str) -> NetworkAttachment:
    return msgspec.structs.replace(na, status=NetworkAttachmentStatus(ipv4=IP, address_vni=VNI, lock_uid=lock_uid))


async def test_a_lock_this_server_just_created_is_used_without_a_store_read() -> None:
    _, held, cacher, nas, locks = await setup()
    na = await attachment(cacher, nas)
    held.flowing.clear()  # the lock's watch event has not reached the cache
    lock = await locks.create(NS, lock_of(na))
    assert cacher.caches["iplocks"].get(f"{NS}/{LOCK}") is None
    reads = held.revision_reads
    updated = await nas.update(NS, "a", showing(na, lock.obj.metadata.uid), subresource="status")
    assert updated.obj.status.ipv4 == IP
    assert held.gets == 0 and held.revision_reads == reads  # neither a store read nor a consistent read
    held.flowing.set()
    await cacher.stop()


async def test_the_guard_still_refuses_an_address_whose_lock_went_meanwhile() -> None:
    store, held, cacher, nas, locks = await setup()
    na = await attachment(cacher, nas)
    held.flowing.clear()
    lock = await locks.create(NS, lock_of(na))
    await store.delete(f"/iplocks/{NS}/{LOCK}")  # another server deleted it: the cache and the hint are stale
    with pytest.raises(Conflict, match="does not exist"):
        await nas.update(NS, "a", showing(na, lock.obj.metadata.uid), subresource="status")
    stored = await store.get(f"/networkattachments/{NS}/a")
    assert stored is not None and not codec.decode(stored.value, NetworkAttachment).status.ipv4
    await cacher.stop()


async def test_a_lock_another_server_created_is_read_from_the_store() -> None:
    store, held, cacher, nas, _ = await setup()
    na = await attachment(cacher, nas)
    held.flowing.clear()
    prepared = codec.with_resource_version(
        msgspec.structs.replace(lock_of(na), metadata=msgspec.structs.replace(lock_of(na).metadata, uid="u-lock")), 0
    )
    await store.create(f"/iplocks/{NS}/{LOCK}", codec.encode(prepared))  # not through this server's registry
    updated = await nas.update(NS, "a", showing(na, "u-lock"), subresource="status")
    assert updated.obj.status.lock_uid == "u-lock" and held.gets == 1
    held.flowing.set()
    await cacher.stop()
