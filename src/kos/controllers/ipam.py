"""IPAM: gives every NetworkAttachment an address from its subnet, never the same one twice (reference §4).

Taking an address *is* creating its IPLock, named `v1-<vni>-<a>-<b>-<c>-<d>` and
controlled by the NA: the store refuses a second object of that name, so two
IPAM instances can never both take one address. The address is written into the
NA's status only after its lock exists, so every address in a status is backed
by a lock the NA controls (the latent bug that could write an address without a
lock is fixed: a permanent lock-create error becomes `status.errors.ipam`).

Per NA (a level-triggered sync of its current state):
1. find its subnet; if the subnet is missing, has failed validation or has a
   malformed CIDR, the address is cleared and its locks released (ARCHITECTURE
   §12.3); if the subnet is not yet examined, wait for the validator;
2. classify the locks it controls: usable (right VNI and inside the subnet),
   undesired, or another incarnation's (left to the garbage collector); when the
   lock cache lags the status, fetch the lock the status names;
3. keep the lock in status (or the oldest usable one) and release the others;
4. if it has no address, pick one uniformly among the free ones (`addresses.py`)
   and create its lock; record the status write it made ("anticipation") so it
   does not redo work while its caches catch up;
5. when the subnet is full, say so in status and retry with backoff — and when
   an address of that subnet is freed, retry at once (ARCHITECTURE §12.2).

The apiserver backs this up (`apiserver/address_protection.py`): it refuses a
status that shows an address its lock does not back, and keeps a deleted lock
(terminating, with the `address-in-use` finalizer) while a status shows its
address. So a lock being deleted is not usable here: the NA moves off it, and
only then is the address free. A terminating NA keeps a locked address it shows
(it may still be plugged in) but gets no new one.

This module is the controller (event handlers, the per-NA sync and its release
decisions); the parts are beside it: `address_pool` (which addresses are taken,
who waits for a full subnet), `lock_analysis` (steps 1-2, no API calls),
`iplocks` (the lock calls), `lock_release` (when a lock may go) and
`address_status` (the status write). IPAM talks to the apiserver through
`kos.client.api.API`, so it runs against `kos.testing.fakeapi` in unit tests.
"""

from __future__ import annotations

import random

from kos.api import cidr, names
from kos.api.types import SECTION_SPEC, IPLock, NetworkAttachment, Subnet
from kos.client.api import API
from kos.client.controller import Controller, Retry
from kos.client.informer import Informer
from kos.client.workqueue import WorkQueue
from kos.controllers.address_pool import AddressPool
from kos.controllers.address_status import AddressStatusWriter, observe_since_client_write
from kos.controllers.iplocks import (
    CreateFailed,
    LockClient,
    Refused,
    best_lock,
    lock_for,
    owner_keys,
)
from kos.controllers.lock_analysis import Analysis, AttachmentData, LockSorter, analyze_subnet, stale_anticipation
from kos.controllers.lock_release import LockReleaser
from kos.controllers.metrics import IPAMMetrics
from kos.util.clock import REAL_CLOCK, Clock

RUN_OUT = "Referenced subnet has run out of IPs"
NA_INDEX_SUBNET = "subnet"
LOCK_INDEX_OWNER = "owningAttachment"


def na_key(na: NetworkAttachment) -> str:
    return f"{na.metadata.namespace}/{na.metadata.name}"


class _Full(Exception):
    pass


class IPAM(Controller):
    """Assigns addresses to NetworkAttachments through IPLocks (see the module docstring)."""

    name = "ipam"

    def __init__(
        self,
        api: API,
        subnets: Informer[Subnet],
        attachments: Informer[NetworkAttachment],
        locks: Informer[IPLock],
        queue: WorkQueue[str],
        metrics: IPAMMetrics,
        *,
        workers: int = 32,
        clock: Clock = REAL_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(queue, [subnets, attachments, locks], workers)
        self.api = api
        self.subnets = subnets
        self.attachments = attachments
        self.locks = locks
        self.metrics = metrics
        self.clock = clock
        self.pool = AddressPool(rng)
        self.addresses = self.pool.addresses
        self.lock_client = LockClient(api, metrics)
        self.status = AddressStatusWriter(api, metrics)
        self.releaser = LockReleaser(api, self.lock_client)
        self.data: dict[str, AttachmentData] = {}
        attachments.indexer.add_indexer(NA_INDEX_SUBNET, lambda na: [f"{na.metadata.namespace}/{na.spec.subnet}"])
        locks.indexer.add_indexer(LOCK_INDEX_OWNER, owner_keys)
        subnets.add_handlers(self._on_subnet, lambda old, new: self._on_subnet(new), self._on_subnet_delete)
        attachments.add_handlers(
            lambda na: self.queue.add(na_key(na)),
            lambda old, new: self.queue.add(na_key(new)),
            lambda na: self.queue.add(na_key(na)),
        )
        locks.add_handlers(self._on_lock_add, self._on_lock_update, self._on_lock_delete)

    def on_synced(self) -> None:
        self.metrics.workers.inc(self.workers)

    # --- event handlers ----------------------------------------------------------------------

    def _on_subnet(self, sn: Subnet) -> None:
        if not sn.status.validated and not sn.status.errors:
            return  # the validator has not examined it yet; its verdict will bring us back
        self._on_subnet_delete(sn)

    def _on_subnet_delete(self, sn: Subnet) -> None:
        for key in self.attachments.indexer.index_keys(NA_INDEX_SUBNET, f"{sn.metadata.namespace}/{sn.metadata.name}"):
            self.queue.add(key)

    def _enqueue_owners(self, lock: IPLock) -> None:
        for key in owner_keys(lock):
            self.queue.add(key)

    def _on_lock_update(self, old: IPLock, new: IPLock) -> None:
        # both: an NA whose lock was given to another owner (or to none) by hand must let go of its address
        self._enqueue_owners(old)
        self._enqueue_owners(new)

    def _on_lock_add(self, lock: IPLock) -> None:
        self.pool.lock_added(lock)
        self._enqueue_owners(lock)

    def _on_lock_delete(self, lock: IPLock) -> None:
        waiters = self.pool.lock_deleted(lock)
        self._enqueue_owners(lock)
        for key in waiters:
            self.queue.add(key)

    # --- sync --------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        na = self.attachments.lister.get(ns, name)
        data = self.data.get(key)
        if na is not None:
            if data is None:
                data = self.data[key] = AttachmentData()
            data.address_contention |= na.status.address_contention
        a = await self._analyze_and_release(key, na, data)
        if a is None:
            return
        if na is None or data is None:
            self.data.pop(key, None)
            return
        if a.lock_in_status is not None:
            self.pool.not_waiting(_subnet_key(na), key)
            return
        lock: IPLock | None = None
        ip = ""
        errs = a.status_errs
        full = False
        if not errs:
            try:
                chosen = await self._choose(key, na, a, data)
            except _Full:
                data.address_contention = True
                self.pool.wait(_subnet_key(na), key)
                if RUN_OUT in na.status.errors.ipam:
                    raise Retry(self._full_message(na, a)) from None
                errs, full = [RUN_OUT], True
            else:
                if chosen is None:
                    return  # nothing to write now (see `_choose`)
                lock, ip, errs = chosen
        wrote = await self.status.write(key, na, data, a, lock, ip, errs)
        if lock is not None:
            self.pool.not_waiting(_subnet_key(na), key)
        await self.releaser.release_after_status(key, na, a.release_after_status, confirmed=wrote)
        if full:
            raise Retry(self._full_message(na, a))

    async def _choose(
        self, key: str, na: NetworkAttachment, a: Analysis, data: AttachmentData
    ) -> tuple[IPLock | None, str, list[str]] | None:
        """The lock, address and errors to write for an NA whose status names no usable lock; None when there
        is nothing to write (our own write is in flight). Raises _Full when the subnet has no free address."""
        if a.lock_for_status is not None:
            t = names.parse_lock_name(a.lock_for_status.metadata.name)
            assert t is not None
            if t.ip == data.anticipated_ip:
                self.metrics.anticipation_used.observe(1)
                return None  # our status write is in flight: its notification releases the rest
            self.metrics.anticipation_used.observe(0)
            return a.lock_for_status, t.ip, []
        if data.anticipated_ip:
            self.metrics.anticipation_used.observe(2)
            return None
        if na.metadata.deletion_timestamp is not None:
            return None, "", []  # being deleted: it keeps a locked address it shows, but gets no new one
        self.metrics.anticipation_used.observe(0)
        return await self._pick_and_lock(key, na, a, data)

    @staticmethod
    def _full_message(na: NetworkAttachment, a: Analysis) -> str:
        assert a.block is not None
        lo, hi = a.block.base, a.block.last
        return (
            f"no IP address available in subnet {na.metadata.namespace}/{na.spec.subnet} ({a.vni:06x}/{lo:x}--{hi:x})"
        )

    async def _analyze_and_release(
        self, key: str, na: NetworkAttachment | None, data: AttachmentData | None
    ) -> Analysis | None:
        """Steps 1-3: analyse the NA (None while its subnet is unexamined) and release what is certainly free.

        Never deletes a lock that the NA's *current* status may name: our view of the NA can be stale (another
        IPAM may have just written its status), and a status naming a deleted lock lets the address go twice.
        Such locks go to `release_after_status`.
        """
        sn = self.subnets.lister.get(na.metadata.namespace, na.spec.subnet) if na is not None else None
        a = analyze_subnet(na, sn)
        if a is None:
            return None
        sorter = LockSorter(na, a)
        for lock in self.locks.lister.by_index(LOCK_INDEX_OWNER, key):
            sorter.consider(lock)
        if na is not None and na.status.ipv4 and a.lock_in_status is None and a.block is not None:
            await self._live_lock_in_status(na, a, sorter)
        if data is not None and stale_anticipation(data, na, a):
            data.clear_anticipation()
        if na is None:
            await self.releaser.release_dead_owners(key, sorter.others(None))
        elif a.lock_in_status is not None:
            # the status names a lock that exists, so no writer will move it elsewhere: the others are free
            for lock in sorter.others(a.lock_in_status):
                await self.lock_client.release(key, lock)
        else:
            if sorter.usable and na.metadata.deletion_timestamp is None:  # a terminating NA gets no new address
                a.lock_for_status = best_lock(sorter.usable)
            a.release_after_status = sorter.others(a.lock_for_status)
        return a

    async def _live_lock_in_status(self, na: NetworkAttachment, a: Analysis, sorter: LockSorter) -> None:
        """The lock cache may lag the status: fetch the lock the status names (reference §4.3 B3)."""
        try:
            address = cidr.ip_to_int(na.status.ipv4)
        except ValueError:
            return
        lock = await self.lock_client.fetch_named(na, a.vni, address)
        if lock is not None:
            sorter.consider(lock)
        self.metrics.status_used.observe(1 if lock is not None else 0)

    async def _pick_and_lock(
        self, key: str, na: NetworkAttachment, a: Analysis, data: AttachmentData
    ) -> tuple[IPLock | None, str, list[str]]:
        """Pick a free address and create its lock: (lock, ip, []), or (None, "", [error]) when the apiserver
        refuses the lock for good. Raises _Full; CreateFailed (the address is free again) or Retry (it stays
        taken: another owner holds its name)."""
        assert a.block is not None
        address = self.pool.pick(a.vni, a.block)
        self.metrics.address_contention.observe(0 if address is not None else 1)
        if address is None:
            raise _Full()
        try:
            lock, created = await self.lock_client.create(key, na, lock_for(na, a.vni, address))
        except (Refused, CreateFailed) as e:
            self.pool.put_back(a.vni, address)
            if isinstance(e, CreateFailed):
                raise
            return None, "", [str(e)]  # permanent: say so in status instead of writing an unlocked address
        if created and not na.status.ipv4:
            observe_since_client_write(self.metrics.client_write_to_lock, na, a, data,
                                       lock.extended_metadata.write_time(SECTION_SPEC))  # fmt: skip
        return lock, cidr.int_to_ip(address), []


def _subnet_key(na: NetworkAttachment) -> str:
    return f"{na.metadata.namespace}/{na.spec.subnet}"
