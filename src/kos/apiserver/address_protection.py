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
  attachment of its namespace shows its address does not delete it: the lock gets
  a deletionTimestamp and the `network.example.com/address-in-use` finalizer, so its
  name (the address) stays taken. IPAM sees the lock terminating and moves the
  attachment off the address; `ProtectionController` then removes the finalizer
  and the lock goes. A deletion when nobody shows the address carries a guard on
  the lock's controller — the only attachment that could start to — so a status
  write that races the deletion makes one of the two fail.

Why this is enough: an attachment can start showing an address only through a
status write guarded on the current incarnation of its lock, and only that lock's
controller passes; an incarnation is deleted only while no attachment shows the
address, guarded on the attachments that could. So at every revision at most one
attachment of a namespace shows an address, and it is the controller of the lock
that exists. Across namespaces, uniqueness rests on invariant 2 (a VNI's validated
subnets are in one namespace, which the subnet validator keeps); a status write is
also refused when the cache shows the address held in another namespace, but that
check is not atomic with the write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from kos.api import codec, errors, field, names
from kos.api.errors import Conflict, Invalid, NotFound
from kos.api.types import IPLock, NetworkAttachment
from kos.apiserver.cache import DELETED, CacheEvent, Cacher, Entry
from kos.apiserver.registry import Registry
from kos.storage.interface import Guard, Store
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger
from kos.util.tasks import UniqueQueue, cancel_and_wait

log = get_logger(__name__)

IN_USE_FINALIZER = "network.example.com/address-in-use"
"""Kept on a deleted IPLock while a NetworkAttachment still shows its address; the apiserver removes it."""

_NAS = "networkattachments"
_LOCKS = "iplocks"


def _shows(e: Entry) -> tuple[int, str] | None:
    """The (VNI, address) an attachment's status shows, if any."""
    st = e.obj.status
    return (st.address_vni, st.ipv4) if st.ipv4 else None


def _address_key(obj: Any) -> str:
    """The derived-index value of an attachment: "<VNI>/<IPv4>" while its status shows an address, else ""."""
    st = obj.status
    return f"{st.address_vni}/{st.ipv4}" if st.ipv4 else ""


class AddressBook:
    """Who shows an address, and the locks, read from the watch cache (one revision for every kind)."""

    def __init__(self, cacher: Cacher, store: Store) -> None:
        self.store = store
        self.cacher = cacher
        self.nas = cacher.caches[_NAS]
        self.locks = cacher.caches[_LOCKS]
        self._showing = self.nas.add_derived_index("address", _address_key)

    def holders(self, vni: int, ip: str, namespace: str | None = None) -> list[Entry]:
        """The attachments whose status shows `ip` in `vni` (in `namespace`, or in any)."""
        keys = self._showing.get(f"{vni}/{ip}", ())
        items = self.nas.items
        return [items[k] for k in keys if namespace is None or items[k].namespace == namespace]

    def na_guard(self, namespace: str, name: str) -> Guard:
        """A guard that the attachment `namespace/name` is as this cache has it (absent: absent)."""
        e = self.nas.get(f"{namespace}/{name}")
        return Guard(f"/{_NAS}/{namespace}/{name}", e.rev if e is not None else 0)

    async def lock(self, namespace: str, name: str) -> Entry | None:
        """The IPLock from the cache or, when the cache has not seen it yet (it was created a moment ago), from
        this server's own write of it whose event is still on the way, or else from the store — newer than the
        cache then; the write's guard on the lock's revision is what makes the check exact in every case."""
        key = f"{namespace}/{name}"
        e = self.locks.get(key) or self.cacher.own_write(key, IPLock)
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
        if others:  # in this namespace this cannot be (the lock is this NA's); in another, invariant 2 was broken
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
        holders = self.book.holders(t.vni, t.ip, lock.obj.metadata.namespace)
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
        drops_protection = IN_USE_FINALIZER in old.obj.metadata.finalizers and IN_USE_FINALIZER not in meta.finalizers
        completes_deletion = meta.deletion_timestamp is not None and not meta.finalizers
        if not (drops_protection or completes_deletion):
            return ()
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

    Level-triggered, like Kubernetes' PVC protection controller: it keeps the set of protected
    locks (being deleted, holding `address-in-use`) and looks at one whenever an attachment of
    its namespace stops showing its address, when the lock becomes protected (its holder may
    have let go first), after a failure (again after a second), every `resync` seconds, and
    after the watch cache is rebuilt. Every apiserver runs one; they race harmlessly, each
    removal being a guarded compare-and-swap. Both periods are seconds of `clock`.
    """

    def __init__(
        self,
        cacher: Cacher,
        registry: Registry,
        rule: LockDeletionRule,
        *,
        resync: float = 10.0,
        retry_delay: float = 1.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.retry_delay = retry_delay
        self.rule = rule
        self.resync = resync
        self.locks = cacher.caches[_LOCKS]
        self.queue: UniqueQueue[str] = UniqueQueue()
        self.protected: set[str] = set()
        """Keys of the locks being deleted that hold the in-use finalizer."""
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.scan()
        self._tasks = [
            asyncio.create_task(self._run(), name="kos-address-protection"),
            asyncio.create_task(self._resync(), name="kos-address-protection-resync"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            await cancel_and_wait(t)

    def scan(self) -> None:
        """Find every protected lock in the cache and look at each (at start, and after the cache is rebuilt)."""
        self.protected = {k for k, e in self.locks.items.items() if _protected(e.obj)}
        for key in self.protected:
            self.queue.put(key)

    def on_events(self, events: list[CacheEvent]) -> None:
        for ev in events:
            obj = ev.cur.obj
            if isinstance(obj, NetworkAttachment):
                before = _shows(ev.prev) if ev.prev is not None else None
                if before is None or (ev.type != DELETED and _shows(ev.cur) == before):
                    continue
                try:
                    key = f"{obj.metadata.namespace}/{names.lock_name(*before)}"
                except ValueError:
                    continue
                if key in self.protected:
                    self.queue.put(key)
            elif isinstance(obj, IPLock):
                if ev.type != DELETED and _protected(obj):
                    self.protected.add(ev.cur.key)
                    self.queue.put(ev.cur.key)
                else:
                    self.protected.discard(ev.cur.key)

    async def _resync(self) -> None:
        while True:
            await self.clock.sleep(self.resync)
            for key in self.protected:
                self.queue.put(key)

    async def _run(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._complete(key)
            except asyncio.CancelledError:
                raise
            except NotFound:
                pass
            except Invalid:
                pass  # shown again meanwhile: the holder letting go brings it back
            except Exception as e:  # a lost race, storage trouble: look again shortly
                log.info("address protection failed; will look again", iplock=key, error=e)
                self.clock.call_later(self.retry_delay, self.queue.put, key)

    async def _complete(self, key: str) -> None:
        e = self.locks.get(key)
        if e is None or not _protected(e.obj) or self.rule.in_use(e)[1]:
            return
        ns, name = e.obj.metadata.namespace, e.obj.metadata.name

        def drop(old: Entry) -> Any:
            m = old.obj.metadata
            return codec.replace_meta(old.obj, finalizers=tuple(f for f in m.finalizers if f != IN_USE_FINALIZER))

        await self.registry.guaranteed_update(ns, name, drop, expected=None, subresource=None, dry_run=False)
        log.info("no attachment shows the address any more; the lock's deletion completes", iplock=key)


def _protected(lock: Any) -> bool:
    """Being deleted and held by the in-use finalizer (added by hand to a live lock, it waits for a deletion)."""
    meta = lock.metadata
    return meta.deletion_timestamp is not None and IN_USE_FINALIZER in meta.finalizers
