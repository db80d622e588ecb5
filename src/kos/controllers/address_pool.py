"""IPAM's view of which addresses are taken, and which NAs wait for a full subnet to free one.

An address is taken while an IPLock of its name exists (the lock informer feeds
`lock_added`/`lock_deleted`) or while IPAM has just picked it for a lock it is
creating. The informer can hold two locks of one name for a moment (a delete
and a re-create in one relist), so each (VNI, address) is counted, and freed
only when its count reaches zero. An NA that found its subnet full waits on
the subnet's key; when an address of that subnet is freed, the waiters are
retried at once instead of after their backoff (ARCHITECTURE §12.2).
"""

from __future__ import annotations

import random
from collections.abc import Set

from kos.api import cidr, names
from kos.api.types import IPLock
from kos.controllers.addresses import AddressSets
from kos.util.log import get_logger

log = get_logger(__name__)


class AddressPool:
    """Taken addresses per VNI (`addresses`), and subnet key → the NA keys waiting for one of its addresses."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.addresses = AddressSets(rng)
        self._lock_refs: dict[tuple[int, int], int] = {}
        self.waiting: dict[str, set[str]] = {}
        """Subnet key (`namespace/name`) → NAs that found it full; retried when one of its addresses is freed."""

    def lock_added(self, lock: IPLock) -> None:
        """The lock's address is taken (a lock with a malformed name is logged and ignored)."""
        t = names.parse_lock_name(lock.metadata.name)
        if t is None:
            log.warning(
                "ignoring IPLock with a malformed name", namespace=lock.metadata.namespace, name=lock.metadata.name
            )
            return
        ref = (t.vni, t.address)
        self._lock_refs[ref] = self._lock_refs.get(ref, 0) + 1
        self.addresses.add(t.vni, t.address)

    def lock_deleted(self, lock: IPLock) -> Set[str]:
        """The lock is gone: free its address if no other lock holds it; the NA keys to retry now."""
        t = names.parse_lock_name(lock.metadata.name)
        if t is not None:
            ref = (t.vni, t.address)
            n = self._lock_refs.get(ref, 0) - 1
            if n <= 0:
                self._lock_refs.pop(ref, None)
                self.addresses.discard(t.vni, t.address)
            else:
                self._lock_refs[ref] = n
        return self.waiting.pop(f"{lock.metadata.namespace}/{lock.spec.subnet_name}", _NO_WAITERS)

    def pick(self, vni: int, block: cidr.Block) -> int | None:
        """Take a uniformly chosen free assignable address of `block` in `vni` (an int), or None when full."""
        lo, hi = block.assignable()
        return self.addresses.pick(vni, lo, hi)

    def put_back(self, vni: int, address: int) -> None:
        """Free an address `pick` took whose lock was not created."""
        self.addresses.discard(vni, address)

    def wait(self, subnet_key: str, key: str) -> None:
        """NA `key` found subnet `subnet_key` full: retry it when an address of the subnet is freed."""
        self.waiting.setdefault(subnet_key, set()).add(key)

    def not_waiting(self, subnet_key: str, key: str) -> None:
        waiters = self.waiting.get(subnet_key)
        if waiters is not None:
            waiters.discard(key)


_NO_WAITERS: frozenset[str] = frozenset()
