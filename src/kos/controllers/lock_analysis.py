"""What IPAM concludes about one NA before it writes anything: its subnet, and which of its locks are usable.

Steps 1 and 2 of IPAM's sync (see `ipam.py`), free of API calls so they can be
read and tested on their own:

- `analyze_subnet`: the NA's subnet gives the VNI and block it needs an
  address in, or the error to show (missing, failed validation, malformed
  CIDR), or nothing yet (not examined: the validator's verdict requeues it);
- `LockSorter`: each lock the NA controls is usable (right VNI, inside the
  block, not being deleted), undesired, or another incarnation's (left to the
  garbage collector); it notes the lock the NA's status names, if usable;
- `AttachmentData` keeps, per NA, the status write IPAM made and is waiting
  to see ("anticipation"), so it does not redo work while its caches catch up;
  `stale_anticipation` says when that record no longer applies.
"""

from __future__ import annotations

import dataclasses
import datetime

from kos.api import cidr, names
from kos.api.types import SECTION_SPEC, IPLock, NetworkAttachment, Subnet
from kos.controllers.iplocks import controlling_owner


def subnet_does_not_exist(name: str) -> str:
    return f"Subnet {name} does not exist"


def subnet_not_validated(name: str) -> str:
    return f"Subnet {name} has not passed validation"


def subnet_malformed(name: str, block: str) -> str:
    return f"Subnet {name} has malformed IPv4 CIDR block ({block})"


@dataclasses.dataclass(slots=True)
class AttachmentData:
    """What IPAM remembers of one NA between syncs."""

    anticipated_ip: str = ""
    anticipating_rv: str = ""
    """The NA's resourceVersion our status write was made on."""
    anticipated_rv: str = ""
    """The resourceVersion our status write produced."""
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


def analyze_subnet(na: NetworkAttachment | None, sn: Subnet | None) -> Analysis | None:
    """The subnet half of an NA's analysis (`sn`: its subnet from the cache); None while the subnet is not
    examined yet. A gone NA (`na` None) gets an empty analysis: all its locks are undesired."""
    a = Analysis()
    if na is None:
        return a
    a.subnet_name = na.spec.subnet
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
    return a


class LockSorter:
    """Sorts the locks an NA controls into `usable` and `undesired`, setting `a.lock_in_status`."""

    __slots__ = ("a", "na", "seen", "undesired", "usable")

    def __init__(self, na: NetworkAttachment | None, a: Analysis) -> None:
        self.na = na
        self.a = a
        self.usable: list[IPLock] = []
        self.undesired: list[IPLock] = []
        self.seen: set[str] = set()

    def consider(self, lock: IPLock) -> None:
        """Sort `lock` (each uid once); another incarnation's lock and one being deleted are left alone."""
        na, a = self.na, self.a
        if lock.metadata.uid in self.seen:
            return
        self.seen.add(lock.metadata.uid)
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
            self.undesired.append(lock)
            return
        self.usable.append(lock)
        st = na.status
        if st.lock_uid == lock.metadata.uid and st.ipv4 and st.ipv4 == t.ip:
            a.lock_in_status = lock

    def others(self, kept: IPLock | None) -> list[IPLock]:
        """Every sorted lock but `kept`: the undesired ones, then the other usable ones."""
        return self.undesired + [lk for lk in self.usable if lk is not kept]


def stale_anticipation(data: AttachmentData, na: NetworkAttachment | None, a: Analysis) -> bool:
    """Whether the status write `data` records no longer applies to `na` as now seen (so forget it)."""
    if na is None:
        return True
    rv = na.metadata.resource_version
    return (
        rv not in (data.anticipating_rv, data.anticipated_rv)
        or a.subnet_uid != data.anticipation_subnet_uid
        # our write is visible, yet the lock it named does not back it any more (deleted, or being deleted)
        or (rv == data.anticipated_rv and a.lock_in_status is None)
    )
