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
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
import time
from collections.abc import Callable

import msgspec
from prometheus_client import Histogram

from kos.api import cidr, names
from kos.api.errors import AlreadyExists, Conflict, Invalid, NotFound, StatusError
from kos.api.meta import ObjectMeta, OwnerReference
from kos.api.types import (
    API_VERSION,
    SECTION_ADDRESS,
    SECTION_SPEC,
    IPLock,
    IPLockSpec,
    NetworkAttachment,
    NetworkAttachmentErrors,
    Subnet,
)
from kos.client.controller import Controller, Retry, RetrySoon
from kos.client.informer import Informer
from kos.client.rest import Client
from kos.client.workqueue import WorkQueue
from kos.controllers.addresses import AddressSets
from kos.controllers.metrics import IPAMMetrics, ok
from kos.util.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)

RUN_OUT = "Referenced subnet has run out of IPs"
GC_GRACE = 2.0
"""Seconds IPAM leaves a deleted NA's locks to the apiserver's garbage collector before releasing them itself."""
NA_INDEX_SUBNET = "subnet"
LOCK_INDEX_OWNER = "owningAttachment"


def subnet_does_not_exist(name: str) -> str:
    return f"Subnet {name} does not exist"


def subnet_not_validated(name: str) -> str:
    return f"Subnet {name} has not passed validation"


def subnet_malformed(name: str, block: str) -> str:
    return f"Subnet {name} has malformed IPv4 CIDR block ({block})"


def na_key(na: NetworkAttachment) -> str:
    return f"{na.metadata.namespace}/{na.metadata.name}"


def controlling_owner(lock: IPLock) -> OwnerReference | None:
    for ref in lock.metadata.owner_references:
        if ref.controller and ref.kind == "NetworkAttachment":
            return ref
    return None


def owner_keys(lock: IPLock) -> list[str]:
    return [f"{lock.metadata.namespace}/{r.name}" for r in lock.metadata.owner_references
            if r.controller and r.kind == "NetworkAttachment"]  # fmt: skip


def best_lock(locks: list[IPLock]) -> IPLock:
    """The oldest lock; among equally old ones, the greatest UID (reference §4.3 B5)."""
    epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return min(locks, key=lambda lk: (lk.metadata.creation_timestamp or epoch, _neg(lk.metadata.uid)))


def _neg(s: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in s)


@dataclasses.dataclass(slots=True)
class AttachmentData:
    anticipated_ip: str = ""
    anticipating_rv: str = ""
    anticipated_rv: str = ""
    anticipation_subnet_uid: str = ""
    address_contention: bool = False

    def clear_anticipation(self) -> None:
        self.anticipated_ip = self.anticipating_rv = self.anticipated_rv = self.anticipation_subnet_uid = ""


@dataclasses.dataclass(slots=True)
class Analysis:
    subnet_name: str = ""
    subnet_uid: str = ""
    subnet_time: datetime.datetime | None = None
    vni: int = 0
    block: cidr.Block | None = None
    lock_in_status: IPLock | None = None
    lock_for_status: IPLock | None = None
    status_errs: list[str] = dataclasses.field(default_factory=list)
    release_after_status: list[IPLock] = dataclasses.field(default_factory=list)
    """Locks to release once the NA's current status is known not to name them."""


class _Full(Exception):
    pass


class IPAM(Controller):
    name = "ipam"

    def __init__(
        self,
        client: Client,
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
        self.client = client
        self.subnets = subnets
        self.attachments = attachments
        self.locks = locks
        self.metrics = metrics
        self.clock = clock
        self.addresses = AddressSets(rng)
        self._lock_refs: dict[tuple[int, int], int] = {}
        self.data: dict[str, AttachmentData] = {}
        self._dead_seen: set[str] = set()
        self.waiting: dict[str, set[str]] = {}
        """Subnet key → NAs that found it full; retried when one of its addresses is freed."""
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
        t = names.parse_lock_name(lock.metadata.name)
        if t is None:
            log.warning("ignoring IPLock %s/%s: malformed name", lock.metadata.namespace, lock.metadata.name)
        else:
            ref = (t.vni, t.address)
            self._lock_refs[ref] = self._lock_refs.get(ref, 0) + 1
            self.addresses.add(t.vni, t.address)
        self._enqueue_owners(lock)

    def _on_lock_delete(self, lock: IPLock) -> None:
        t = names.parse_lock_name(lock.metadata.name)
        if t is not None:
            ref = (t.vni, t.address)
            n = self._lock_refs.get(ref, 0) - 1
            if n <= 0:
                self._lock_refs.pop(ref, None)
                self.addresses.discard(t.vni, t.address)
            else:
                self._lock_refs[ref] = n
        self._enqueue_owners(lock)
        for key in self.waiting.pop(f"{lock.metadata.namespace}/{lock.spec.subnet_name}", ()):
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
            self._not_waiting(key, na)
            return
        lock: IPLock | None = None
        ip = ""
        errs = a.status_errs
        full = False
        if not errs:
            if a.lock_for_status is not None:
                t = names.parse_lock_name(a.lock_for_status.metadata.name)
                assert t is not None
                if t.ip == data.anticipated_ip:
                    self.metrics.anticipation_used.observe(1)
                    return  # our status write is in flight: its notification releases the rest
                self.metrics.anticipation_used.observe(0)
                lock, ip = a.lock_for_status, t.ip
            elif data.anticipated_ip:
                self.metrics.anticipation_used.observe(2)
                return
            elif na.metadata.deletion_timestamp is not None:
                pass  # being deleted: it keeps a locked address it shows, but gets no new one
            else:
                self.metrics.anticipation_used.observe(0)
                try:
                    lock, ip, errs = await self._pick_and_lock(key, na, a, data)
                except _Full:
                    data.address_contention = True
                    self.waiting.setdefault(f"{ns}/{na.spec.subnet}", set()).add(key)
                    if RUN_OUT in na.status.errors.ipam:
                        raise Retry(self._full_message(na, a)) from None
                    errs, full = [RUN_OUT], True
        wrote = await self._write_status(key, na, data, a, lock, ip, errs)
        if lock is not None:
            self._not_waiting(key, na)
        await self._release_after_status(key, na, a.release_after_status, confirmed=wrote)
        if full:
            raise Retry(self._full_message(na, a))

    def _not_waiting(self, key: str, na: NetworkAttachment) -> None:
        waiters = self.waiting.get(f"{na.metadata.namespace}/{na.spec.subnet}")
        if waiters is not None:
            waiters.discard(key)

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
        a = Analysis()
        if na is not None:
            a.subnet_name = na.spec.subnet
            sn = self.subnets.lister.get(na.metadata.namespace, na.spec.subnet)
            if sn is None:
                a.status_errs = [subnet_does_not_exist(na.spec.subnet)]
            elif sn.status.validated:
                a.vni, a.subnet_uid = sn.spec.vni, sn.metadata.uid
                a.subnet_time = sn.extended_metadata.write_time(SECTION_SPEC)
                try:
                    a.block = cidr.parse_block(sn.spec.ipv4)
                except cidr.CIDRError:
                    a.status_errs = [subnet_malformed(sn.metadata.name, sn.spec.ipv4)]
            elif not sn.status.errors:
                return None  # not examined yet: the validator's verdict will requeue this NA
            else:
                a.status_errs = [subnet_not_validated(na.spec.subnet)]
        usable: list[IPLock] = []
        undesired: list[IPLock] = []
        seen: set[str] = set()

        def consider(lock: IPLock) -> None:
            if lock.metadata.uid in seen:
                return
            seen.add(lock.metadata.uid)
            t = names.parse_lock_name(lock.metadata.name)
            if t is None:
                return
            owner = controlling_owner(lock)
            if na is not None and (owner is None or owner.uid != na.metadata.uid):
                return  # another incarnation's lock: the garbage collector's business
            if lock.metadata.deletion_timestamp is not None:
                # Being deleted (by hand, or by a foreground deletion): the apiserver keeps it until no status shows
                # its address, so the NA must move off it; deleting it again would change nothing.
                return
            if na is None or a.status_errs or a.block is None or t.vni != a.vni or not a.block.contains(t.address):
                undesired.append(lock)
                return
            usable.append(lock)
            st = na.status
            if st.lock_uid == lock.metadata.uid and st.ipv4 and st.ipv4 == t.ip:
                a.lock_in_status = lock

        for lock in self.locks.lister.by_index(LOCK_INDEX_OWNER, key):
            consider(lock)
        if na is not None and na.status.ipv4 and a.lock_in_status is None and a.block is not None:
            await self._live_lock_in_status(na, a, consider)
        if data is not None and (
            na is None
            or na.metadata.resource_version not in (data.anticipating_rv, data.anticipated_rv)
            or a.subnet_uid != data.anticipation_subnet_uid
            # our write is visible, yet the lock it named does not back it any more (deleted, or being deleted)
            or (na.metadata.resource_version == data.anticipated_rv and a.lock_in_status is None)
        ):
            data.clear_anticipation()
        # Never delete a lock that the NA's *current* status may name: our view of the NA can be stale (another
        # IPAM may have just written its status), and a status naming a deleted lock lets the address go twice.
        if na is None:
            await self._release_dead_owners(key, undesired + usable)
        elif a.lock_in_status is not None:
            # the status names a lock that exists, so no writer will move it elsewhere: the others are free
            for lock in undesired + [lk for lk in usable if lk is not a.lock_in_status]:
                await self._release(key, lock)
        else:
            if usable and na.metadata.deletion_timestamp is None:  # a terminating NA gets no new address
                a.lock_for_status = best_lock(usable)
            a.release_after_status = undesired + [lk for lk in usable if lk is not a.lock_for_status]
        return a

    async def _release_dead_owners(self, key: str, locks: list[IPLock]) -> None:
        """The NA is gone from our cache: release the locks of incarnations that are certainly dead.

        A lock's owner existed before the lock did; if a consistent read now finds no NA of that name, or one with
        another UID, that owner is gone for good (UIDs are never reused). A new incarnation's locks are kept.
        """
        if not locks:
            self._dead_seen.discard(key)
            return
        if key not in self._dead_seen:
            # The apiserver's garbage collector deletes the locks of a deleted NA at once; come back later and
            # release only what is still left (saves a GET and a DELETE per deleted NA).
            self._dead_seen.add(key)
            raise RetrySoon(f"{key} is gone; its locks are left to the garbage collector for now", GC_GRACE)
        self._dead_seen.discard(key)
        ns, _, name = key.partition("/")
        try:
            live_uid = (await self.client.get(NetworkAttachment, ns, name)).metadata.uid
        except NotFound:
            live_uid = ""
        for lock in locks:
            owner = controlling_owner(lock)
            if owner is not None and owner.uid != live_uid:
                await self._release(key, lock)

    async def _release_after_status(
        self, key: str, na: NetworkAttachment, locks: list[IPLock], confirmed: bool
    ) -> None:
        """Release `locks` once the status is known not to name them (`confirmed`: we just wrote that status)."""
        if not locks:
            return
        if not confirmed:
            ns, _, name = key.partition("/")
            try:
                live = await self.client.get(NetworkAttachment, ns, name)
            except NotFound:
                return  # gone: the NA's deletion brings us back
            if live.metadata.uid != na.metadata.uid or live.status.lock_uid in {lk.metadata.uid for lk in locks}:
                raise Retry(f"the status of {key} changed under us")
        for lock in locks:
            await self._release(key, lock)

    async def _live_lock_in_status(
        self, na: NetworkAttachment, a: Analysis, consider: Callable[[IPLock], None]
    ) -> None:
        """The lock cache may lag the status: fetch the lock the status names (reference §4.3 B3)."""
        try:
            address = cidr.ip_to_int(na.status.ipv4)
        except ValueError:
            return
        used = 0
        try:
            lock = await self.client.get(IPLock, na.metadata.namespace, names.lock_name(a.vni, address))
        except NotFound:
            lock = None
        if lock is not None:
            owner = controlling_owner(lock)
            if owner is not None and owner.name == na.metadata.name:
                used = 1
                consider(lock)
        self.metrics.status_used.observe(used)

    async def _release(self, key: str, lock: IPLock) -> None:
        t0 = time.perf_counter()
        try:
            await self.client.delete(IPLock, lock.metadata.namespace, lock.metadata.name, uid=lock.metadata.uid)
        except NotFound:
            pass
        except Conflict as e:
            if "Precondition failed" not in e.message:
                self.metrics.lock_latency.labels("delete", "err").observe(time.perf_counter() - t0)
                raise
            # the name now belongs to another lock: ours is already gone
        except StatusError:
            self.metrics.lock_latency.labels("delete", "err").observe(time.perf_counter() - t0)
            raise
        self.metrics.lock_latency.labels("delete", "ok").observe(time.perf_counter() - t0)
        log.debug("released IPLock %s/%s of %s", lock.metadata.namespace, lock.metadata.name, key)

    async def _pick_and_lock(
        self, key: str, na: NetworkAttachment, a: Analysis, data: AttachmentData
    ) -> tuple[IPLock | None, str, list[str]]:
        assert a.block is not None
        lo, hi = a.block.assignable()
        address = self.addresses.pick(a.vni, lo, hi)
        self.metrics.address_contention.observe(0 if address is not None else 1)
        if address is None:
            raise _Full()
        ip = cidr.int_to_ip(address)
        ns = na.metadata.namespace
        lname = names.lock_name(a.vni, address)
        wanted = IPLock(
            metadata=ObjectMeta(
                name=lname,
                namespace=ns,
                # blockOwnerDeletion: a foreground deletion of the NA waits until its address is released
                owner_references=(OwnerReference(api_version=API_VERSION, kind="NetworkAttachment",
                                                 name=na.metadata.name, uid=na.metadata.uid, controller=True,
                                                 block_owner_deletion=True),),
            ),
            spec=IPLockSpec(subnet_name=na.spec.subnet),
        )  # fmt: skip
        for _ in range(3):
            t0 = time.perf_counter()
            try:
                lock = await self.client.create(wanted)
            except AlreadyExists:
                self.metrics.lock_latency.labels("create", "err").observe(time.perf_counter() - t0)
                try:
                    existing = await self.client.get(IPLock, ns, lname)
                except NotFound:
                    continue  # deleted in between: try to create it again
                except StatusError as e:
                    raise Retry(f"failed to fetch allegedly existing IPLock {ns}/{lname}: {e}") from e
                owner = controlling_owner(existing)
                if owner is not None and owner.name == na.metadata.name and owner.uid == na.metadata.uid:
                    log.info("recovered IPLock %s/%s for %s", ns, lname, key)
                    return existing, ip, []
                raise Retry(f"cache incoherence at {lname}") from None  # the address stays marked as taken
            except Invalid as e:  # permanent: say so in status instead of writing an unlocked address
                self.metrics.lock_latency.labels("create", "err").observe(time.perf_counter() - t0)
                self.addresses.discard(a.vni, address)
                return None, "", [f"Failed to create IPLock {lname}: {e.message}"]
            except StatusError as e:
                self.metrics.lock_latency.labels("create", "err").observe(time.perf_counter() - t0)
                self.addresses.discard(a.vni, address)
                raise Retry(f"Create of IPLock {lname} for {key} failed: {e}") from e
            self.metrics.lock_latency.labels("create", "ok").observe(time.perf_counter() - t0)
            if not na.status.ipv4:
                self._observe_since_client_write(self.metrics.client_write_to_lock, na, a, data,
                                                 lock.extended_metadata.write_time(SECTION_SPEC))  # fmt: skip
            return lock, ip, []
        raise Retry(f"IPLock {lname} keeps appearing and disappearing")

    def _observe_since_client_write(
        self,
        hist: Histogram,
        na: NetworkAttachment,
        a: Analysis,
        data: AttachmentData,
        t: datetime.datetime | None,
    ) -> None:
        na_t = na.extended_metadata.write_time(SECTION_SPEC)
        if t is None or na_t is None:
            return
        label, last = "na", na_t
        if a.subnet_time is not None and a.subnet_time > na_t:
            label, last = "subnet", a.subnet_time
        hist.labels(label, "true" if data.address_contention else "false").observe((t - last).total_seconds())

    async def _write_status(
        self,
        key: str,
        na: NetworkAttachment,
        data: AttachmentData,
        a: Analysis,
        lock: IPLock | None,
        ip: str,
        errs: list[str],
    ) -> bool:
        """Write the status IPAM owns; whether a write happened (False: it was already so, or the NA is gone)."""
        st = na.status
        new_status = msgspec.structs.replace(
            st,
            errors=NetworkAttachmentErrors(ipam=tuple(errs), host=st.errors.host),
            subnet_creation_time=a.subnet_time,
            address_contention=data.address_contention,
            lock_uid=lock.metadata.uid if lock is not None else "",
            address_vni=a.vni if lock is not None else 0,
            ipv4=ip if lock is not None else "",
        )
        if new_status == st:
            return False
        t0 = time.perf_counter()
        try:
            updated = await self.client.update_status(msgspec.structs.replace(na, status=new_status))
        except NotFound:
            self.metrics.update_latency.labels(ok(bool(errs)), "nf").observe(time.perf_counter() - t0)
            raise Retry(f"{key} is gone") from None
        except StatusError as e:
            self.metrics.update_latency.labels(ok(bool(errs)), "err").observe(time.perf_counter() - t0)
            raise Retry(f"Failed to write into status of NetworkAttachment {key}: {e}") from e
        self.metrics.update_latency.labels(ok(bool(errs)), "ok").observe(time.perf_counter() - t0)
        if lock is not None:
            self._observe_since_client_write(self.metrics.client_write_to_address, na, a, data,
                                             updated.extended_metadata.write_time(SECTION_ADDRESS))  # fmt: skip
            data.anticipated_ip = ip
            data.anticipating_rv = na.metadata.resource_version
            data.anticipated_rv = updated.metadata.resource_version
            data.anticipation_subnet_uid = a.subnet_uid
            log.debug("assigned %s to %s", ip, key)
        return True
