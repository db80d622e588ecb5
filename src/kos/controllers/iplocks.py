"""IPLocks: the object whose existence *is* an address taken, created and released by IPAM.

A lock is named `v1-<vni>-<a>-<b>-<c>-<d>` (`kos.api.names.lock_name`) and
controlled by the NA that holds the address, so the store refuses a second
holder. `LockClient` makes the calls IPAM needs with the care each one takes:

- `create` recovers a lock that already exists and is ours (a retry after a
  lost response), and tells a permanent refusal (422: reported in the NA's
  status) from a transient one (retried);
- `release` deletes with a uid precondition, so a lock of the same name made
  since for someone else is never deleted; a failed precondition
  (`kos.api.errors.is_precondition_failed`) means ours is already gone;
- `fetch_named` reads the lock a status names when the lock cache lags it.

Each create and delete is timed into `kos_ipam_lock_latency_seconds`.
"""

from __future__ import annotations

import datetime

from kos.api import names
from kos.api.errors import AlreadyExists, Conflict, Invalid, NotFound, StatusError, is_precondition_failed
from kos.api.meta import ObjectMeta, OwnerReference
from kos.api.types import API_VERSION, IPLock, IPLockSpec, NetworkAttachment
from kos.client.api import API
from kos.client.controller import Retry
from kos.controllers.metrics import IPAMMetrics
from kos.util.log import get_logger
from kos.util.timing import ERR, Timed

log = get_logger(__name__)

CREATE_ATTEMPTS = 3
"""Creates of one lock name that may each find it gone again before IPAM gives up for this sync."""


def controlling_owner(lock: IPLock) -> OwnerReference | None:
    """The NetworkAttachment that controls `lock`, if any."""
    for ref in lock.metadata.owner_references:
        if ref.controller and ref.kind == "NetworkAttachment":
            return ref
    return None


def owner_keys(lock: IPLock) -> list[str]:
    """`namespace/name` of each controlling NetworkAttachment of `lock` (the lock informer's owner index)."""
    return [f"{lock.metadata.namespace}/{r.name}" for r in lock.metadata.owner_references
            if r.controller and r.kind == "NetworkAttachment"]  # fmt: skip


def best_lock(locks: list[IPLock]) -> IPLock:
    """The oldest lock; among equally old ones, the greatest UID (reference §4.3 B5)."""
    epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return min(locks, key=lambda lk: (lk.metadata.creation_timestamp or epoch, _neg(lk.metadata.uid)))


def _neg(s: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in s)


def lock_for(na: NetworkAttachment, vni: int, address: int) -> IPLock:
    """The lock that gives `address` of `vni` to `na` (controlled by it, blocking its foreground deletion)."""
    return IPLock(
        metadata=ObjectMeta(
            name=names.lock_name(vni, address),
            namespace=na.metadata.namespace,
            # blockOwnerDeletion: a foreground deletion of the NA waits until its address is released
            owner_references=(OwnerReference(api_version=API_VERSION, kind="NetworkAttachment",
                                             name=na.metadata.name, uid=na.metadata.uid, controller=True,
                                             block_owner_deletion=True),),
        ),
        spec=IPLockSpec(subnet_name=na.spec.subnet),
    )  # fmt: skip


def owned_by(lock: IPLock, na: NetworkAttachment) -> bool:
    owner = controlling_owner(lock)
    return owner is not None and owner.name == na.metadata.name and owner.uid == na.metadata.uid


class Refused(Exception):
    """The apiserver refused the lock for good (422): the NA's status must say so instead of showing an address."""


class CreateFailed(Retry):
    """The create failed for a reason a retry may fix: the address was not taken and is free again."""


class LockClient:
    """IPLock calls against an `API`, timed; see the module docstring for what each one guarantees."""

    def __init__(self, api: API, metrics: IPAMMetrics) -> None:
        self.api = api
        self.metrics = metrics

    async def create(self, key: str, na: NetworkAttachment, wanted: IPLock) -> tuple[IPLock, bool]:
        """The lock `wanted` for NA `key` and whether it was created now (False: found, already ours).

        Raises Refused (422, with the message for the NA's status), CreateFailed (any other refusal of the
        create: the name is not taken), Retry when the name stays taken by another owner (our address cache
        was stale) or could not be read.
        """
        ns, lname = wanted.metadata.namespace, wanted.metadata.name
        for _ in range(CREATE_ATTEMPTS):
            with Timed(self.metrics.lock_latency, "create") as t:
                try:
                    return await self.api.create(wanted), True
                except AlreadyExists:
                    t.outcome = ERR
                except Invalid as e:
                    raise Refused(f"Failed to create IPLock {lname}: {e.message}") from e
                except StatusError as e:
                    raise CreateFailed(f"Create of IPLock {lname} for {key} failed: {e}") from e
            # it exists: ours from an attempt whose answer was lost, or another NA's
            try:
                existing = await self.api.get(IPLock, ns, lname)
            except NotFound:
                continue  # deleted in between: try to create it again
            except StatusError as e:
                raise Retry(f"failed to fetch allegedly existing IPLock {ns}/{lname}: {e}") from e
            if owned_by(existing, na):
                log.info("recovered IPLock", namespace=ns, name=lname, key=key)
                return existing, False
            raise Retry(f"cache incoherence at {lname}") from None  # the address stays marked as taken
        raise Retry(f"IPLock {lname} keeps appearing and disappearing")

    async def release(self, key: str, lock: IPLock) -> None:
        """Delete `lock` (held by NA `key`) if it is still that lock; StatusError for failures to retry."""
        with Timed(self.metrics.lock_latency, "delete"):
            try:
                await self.api.delete(IPLock, lock.metadata.namespace, lock.metadata.name, uid=lock.metadata.uid)
            except NotFound:
                pass
            except Conflict as e:
                if not is_precondition_failed(e):
                    raise
                # the name now belongs to another lock: ours is already gone
        log.debug("released IPLock", namespace=lock.metadata.namespace, name=lock.metadata.name, key=key)

    async def fetch_named(self, na: NetworkAttachment, vni: int, address: int) -> IPLock | None:
        """The live lock of `address` in `vni` if one of `na`'s name controls it, else None (reference §4.3 B3)."""
        try:
            lock = await self.api.get(IPLock, na.metadata.namespace, names.lock_name(vni, address))
        except NotFound:
            return None
        owner = controlling_owner(lock)
        if owner is not None and owner.name == na.metadata.name:
            return lock
        return None
