"""Address protection: no address is ever shown by two attachments, at any revision (ARCHITECTURE §8.1).

An address is taken by creating its IPLock; the store refuses a second lock of that
name. That alone is not enough, because a lock can disappear while an attachment
still shows its address — deleted by hand, by foreground garbage collection while
its owner waits on a finalizer, or by a second IPAM acting on a stale view — and
the next attachment then gets the same address (Whereabouts #207, AWS VPC CNI
#1091). So the apiserver ties the two objects together, as Kubernetes' PVC
protection ties a claim to the pods using it (`kubernetes.io/pvc-protection`):

* **Showing an address needs its lock.** A status write that makes a
  NetworkAttachment show an address (a new `ipv4`, `addressVNI` or `lockUID`) is
  accepted only if the IPLock named after that VNI and address exists, has the UID
  the status names, is controlled by this attachment and is not being deleted —
  and the write carries a store guard on that lock's revision, so the check and
  the write are one atomic step even when this server's cache lags the store.
* **A lock goes only when nobody shows its address.** Deleting an IPLock while an
  attachment shows its address does not delete it: the lock gets a
  deletionTimestamp and the `network.example.com/address-in-use` finalizer, so its
  name (the address) stays taken. IPAM sees the lock terminating and moves the
  attachment off the address; `ProtectionController` then removes the finalizer
  and the lock goes. Every lock deletion carries guards on the attachments that
  could show its address (those that do, and the lock's controller), so a status
  write that races the deletion makes one of the two fail.

Why this is enough: an attachment can start showing an address only through a
status write guarded on the current incarnation of its lock, and only that lock's
controller passes; an incarnation is deleted only while no attachment shows the
address, guarded on the attachments that could. So at every revision at most one
attachment shows an address, and it is the controller of the lock that exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from kos.api import codec, errors, field, names
from kos.api.errors import Conflict, NotFound, StatusError
from kos.api.types import IPLock, NetworkAttachment
from kos.apiserver.cache import DELETED, CacheEvent, Cacher, Entry
from kos.apiserver.registry import Registry
from kos.storage.interface import Guard, Store
from kos.util.tasks import UniqueQueue, cancel_and_wait

log = logging.getLogger(__name__)

IN_USE_FINALIZER = "network.example.com/address-in-use"
"""Kept on a deleted IPLock while a NetworkAttachment still shows its address; the apiserver removes it."""

_NAS = "networkattachments"
_LOCKS = "iplocks"


def _shows(e: Entry) -> tuple[int, str] | None:
    """The (VNI, address) an attachment's status shows, if any."""
    st = e.obj.status
    return (st.address_vni, st.ipv4) if st.ipv4 else None


class AddressBook:
    """Who shows or holds an address, read from the watch cache (one consistent revision for every kind)."""

    def __init__(self, cacher: Cacher, store: Store) -> None:
        self.cacher = cacher
        self.store = store
        self.nas = cacher.caches[_NAS]
        self.locks = cacher.caches[_LOCKS]

    def holders(self, vni: int, ip: str) -> list[Entry]:
        """The attachments (any namespace) whose status shows `ip` in `vni`."""
        keys = self.nas.index["status.ipv4"].get(ip, ())
        vni_s = str(vni)
        return [e for k in keys if (e := self.nas.items[k]).fields["status.addressVNI"] == vni_s]

    def na_guard(self, namespace: str, name: str) -> Guard:
        """A guard that the attachment `namespace/name` is as this cache has it (absent: absent)."""
        e = self.nas.get(f"{namespace}/{name}")
        return Guard(f"/{_NAS}/{namespace}/{name}", e.rev if e is not None else 0)

    async def lock(self, namespace: str, name: str) -> Entry | None:
        """The IPLock, from the cache or, when the cache has not seen it yet, from the store."""
        e = self.locks.get(f"{namespace}/{name}")
        if e is not None:
            return e
        kv = await self.store.get(f"/{_LOCKS}/{namespace}/{name}")
        return None if kv is None else self.locks.make_entry(f"{namespace}/{name}", kv.value, kv.mod_revision)


def _describe(e: Entry) -> str:
    return f"{e.obj.metadata.namespace}/{e.obj.metadata.name}"


class AttachmentStatusRule:
    """The NetworkAttachment registry's rule: a status may show an address only while its lock backs it."""

    def __init__(self, book: AddressBook) -> None:
        self.book = book

    async def update_guards(self, new: Any, old: Entry, subresource: str | None) -> Sequence[Guard]:
        if subresource != "status":
            return ()  # the main resource keeps the status it had
        st, was = new.status, old.obj.status
        if not st.ipv4 or (st.ipv4, st.address_vni, st.lock_uid) == (was.ipv4, was.address_vni, was.lock_uid):
            return ()
        meta = old.obj.metadata
        try:
            lname = names.lock_name(st.address_vni, st.ipv4)
        except ValueError:
            raise errors.invalid(
                "NetworkAttachment", meta.name, [field.invalid("status.ipv4", st.ipv4, "must be an IPv4 address")]
            ) from None
        what = f"status.ipv4 {st.ipv4} in VNI {st.address_vni}"
        lock = await self.book.lock(meta.namespace, lname)
        if lock is None:
            raise self._refuse(meta.name, f"{what} is not held: IPLock {meta.namespace}/{lname} does not exist")
        lmeta = lock.obj.metadata
        if lmeta.uid != st.lock_uid:
            raise self._refuse(
                meta.name, f"{what}: status.lockUID {st.lock_uid!r} is not the UID of IPLock {_describe(lock)}"
            )
        owner = lmeta.controller_ref()
        if owner is None or owner.kind != "NetworkAttachment" or owner.uid != meta.uid:
            holder = f"{owner.kind} {owner.name} ({owner.uid})" if owner is not None else "nobody"
            raise self._refuse(meta.name, f"{what}: IPLock {_describe(lock)} is controlled by {holder}, not by it")
        if lmeta.deletion_timestamp is not None:
            raise self._refuse(meta.name, f"{what}: IPLock {_describe(lock)} is being deleted")
        others = [e for e in self.book.holders(st.address_vni, st.ipv4) if e.uid != meta.uid]
        if others:
            raise self._refuse(meta.name, f"{what} is shown by NetworkAttachment {_describe(others[0])}")
        return (Guard(f"/{_LOCKS}/{lock.key}", lock.rev),)

    @staticmethod
    def _refuse(name: str, why: str) -> Conflict:
        return errors.conflict(_NAS, name, why)

    def delete_guards(self, old: Entry) -> tuple[Sequence[Guard], str]:
        return (), ""


class LockDeletionRule:
    """The IPLock registry's rule: a lock goes only once no attachment shows its address."""

    def __init__(self, book: AddressBook) -> None:
        self.book = book

    def in_use(self, lock: Entry) -> tuple[list[Guard], str]:
        """Guards for deleting `lock` now, and who shows its address ("" when nobody does)."""
        t = names.parse_lock_name(lock.obj.metadata.name)
        if t is None:
            return [], ""  # not named after an address: nothing can show it
        holders = self.book.holders(t.vni, t.ip)
        if holders:
            e = holders[0]
            return [], f"NetworkAttachment {_describe(e)} shows {t.ip} in VNI {t.vni}"
        # Nobody shows the address in this view. Only the lock's controller can start to (its status write
        # is guarded on this lock); guard that it is still as seen, so a racing status write fails one of us.
        owner = lock.obj.metadata.controller_ref()
        if owner is None or owner.kind != "NetworkAttachment":
            return [], ""
        return [self.book.na_guard(lock.obj.metadata.namespace, owner.name)], ""

    async def update_guards(self, new: Any, old: Entry, subresource: str | None) -> Sequence[Guard]:
        meta = new.metadata
        if meta.deletion_timestamp is None or IN_USE_FINALIZER in meta.finalizers:
            return ()
        if IN_USE_FINALIZER not in old.obj.metadata.finalizers and meta.finalizers:
            return ()  # neither removes the protection nor completes the deletion
        guards, holder = self.in_use(old)
        if holder:
            raise errors.invalid(
                "IPLock",
                meta.name,
                [
                    field.forbidden(
                        "metadata.finalizers",
                        f"{IN_USE_FINALIZER} stays until no attachment shows the address, and {holder}",
                    )
                ],
            )
        return guards

    def delete_guards(self, old: Entry) -> tuple[Sequence[Guard], str]:
        guards, holder = self.in_use(old)
        return ((), IN_USE_FINALIZER) if holder else (guards, "")


class ProtectionController:
    """Completes deferred IPLock deletions: removes the in-use finalizer once nobody shows the address.

    Follows the watch cache's events (every apiserver runs one; they race harmlessly, each
    removal being a guarded compare-and-swap): an attachment that stops showing an address
    queues the lock named after it; a lock that becomes protected is queued too, in case its
    holder let go before the protection was written.
    """

    def __init__(self, cacher: Cacher, registry: Registry, rule: LockDeletionRule) -> None:
        self.cacher = cacher
        self.registry = registry
        self.rule = rule
        self.locks = cacher.caches[_LOCKS]
        self.queue: UniqueQueue[str] = UniqueQueue()
        self._task: asyncio.Task[None] | None = None
        self.completed = 0

    def start(self) -> None:
        for key, e in self.locks.items.items():
            if IN_USE_FINALIZER in e.obj.metadata.finalizers:
                self._enqueue(key)
        self._task = asyncio.create_task(self._run(), name="kos-address-protection")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def _enqueue(self, key: str) -> None:
        self.queue.put(key)

    def on_events(self, events: list[CacheEvent]) -> None:
        for ev in events:
            obj = ev.cur.obj
            if isinstance(obj, NetworkAttachment):
                before = _shows(ev.prev) if ev.prev is not None else None
                if before is None or (ev.type != DELETED and _shows(ev.cur) == before):
                    continue
                try:
                    lname = names.lock_name(*before)
                except ValueError:
                    continue
                key = f"{obj.metadata.namespace}/{lname}"
                e = self.locks.get(key)
                if e is not None and IN_USE_FINALIZER in e.obj.metadata.finalizers:
                    self._enqueue(key)
            elif isinstance(obj, IPLock) and ev.type != DELETED and IN_USE_FINALIZER in obj.metadata.finalizers:
                self._enqueue(ev.cur.key)

    async def _run(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._complete(key)
            except asyncio.CancelledError:
                raise
            except (NotFound, Conflict):
                pass
            except StatusError as e:  # includes "still in use" (Invalid): a later event brings it back
                log.debug("address protection of IPLock %s: %s", key, e)
            except Exception:
                log.exception("address protection of IPLock %s failed", key)

    async def _complete(self, key: str) -> None:
        e = self.locks.get(key)
        if e is None or IN_USE_FINALIZER not in e.obj.metadata.finalizers:
            return
        if e.obj.metadata.deletion_timestamp is None:
            return  # someone added it by hand to a live lock; it matters only once the lock is deleted
        if self.rule.in_use(e)[1]:
            return
        ns, name = e.obj.metadata.namespace, e.obj.metadata.name

        def drop(old: Entry) -> Any:
            m = old.obj.metadata
            return codec.replace_meta(old.obj, finalizers=tuple(f for f in m.finalizers if f != IN_USE_FINALIZER))

        await self.registry.guaranteed_update(ns, name, drop, expected=None, subresource=None, dry_run=False)
        self.completed += 1
        log.info("IPLock %s: no attachment shows its address any more; its deletion completes", key)
