"""The invariants of ARCHITECTURE §8 as pure functions: objects in, one line per violation out.

1. Addresses: for each VNI no IPv4 address is held by two NAs; every address in
   an NA's status is backed by an IPLock that the NA controls (named after that
   VNI and address, with the UID the status names); no IPLock outlives its owner.
2. Subnets: validated subnets with the same VNI have disjoint CIDRs and one namespace.
4. Readiness: every NA whose subnet is validated and has free addresses is ready
   (or, before agents exist, at least addressed). An address held by an IPLock is not
   free, whether or not the lock has an owner (an orphaning deletion leaves such locks).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from kos.api import cidr, names
from kos.api.types import IPLock, NetworkAttachment, Subnet


def _ref(o: NetworkAttachment | Subnet | IPLock) -> str:
    return f"{o.metadata.namespace}/{o.metadata.name}"


def address_violations(nas: Iterable[NetworkAttachment], locks: Iterable[IPLock], *, orphans: bool = True) -> list[str]:
    """Invariant 1. `orphans=False` skips "no lock outlives its owner", which only holds after quiescence."""
    nas = list(nas)
    locks_by_key = {(lk.metadata.namespace, lk.metadata.name): lk for lk in locks}
    out: list[str] = []
    holders: dict[tuple[int, str], list[str]] = collections.defaultdict(list)
    for na in nas:
        st = na.status
        if not st.ipv4:
            continue
        holders[(st.address_vni, st.ipv4)].append(_ref(na))
        try:
            lname = names.lock_name(st.address_vni, st.ipv4)
        except ValueError:
            out.append(f"address: NA {_ref(na)} has a malformed address {st.ipv4!r}")
            continue
        lock = locks_by_key.get((na.metadata.namespace, lname))
        if lock is None:
            out.append(
                f"address: NA {_ref(na)} holds {st.ipv4} in VNI {st.address_vni} but IPLock {lname} does not exist"
            )
            continue
        owner = lock.metadata.controller_ref()
        if owner is None or owner.uid != na.metadata.uid:
            out.append(
                f"address: NA {_ref(na)} holds {st.ipv4} in VNI {st.address_vni} but IPLock {lname} is controlled by"
                f" {owner.name + ' ' + owner.uid if owner else 'nobody'}"
            )
        elif lock.metadata.uid != st.lock_uid:
            out.append(
                f"address: NA {_ref(na)} names lock UID {st.lock_uid} but IPLock {lname} has UID {lock.metadata.uid}"
            )
    for (vni, ip), who in sorted(holders.items()):
        if len(who) > 1:
            out.append(f"address: {ip} in VNI {vni} is held by {len(who)} NAs: {', '.join(sorted(who))}")
    live = {na.metadata.uid for na in nas}
    for lock in locks_by_key.values() if orphans else ():
        owner = lock.metadata.controller_ref()
        if owner is not None and owner.kind == "NetworkAttachment" and owner.uid not in live:
            out.append(f"address: IPLock {_ref(lock)} outlives its owner NA {lock.metadata.namespace}/{owner.name}")
    return out


def subnet_violations(subnets: Iterable[Subnet]) -> list[str]:
    by_vni: dict[int, list[tuple[Subnet, cidr.Block]]] = collections.defaultdict(list)
    out: list[str] = []
    for sn in subnets:
        if not sn.status.validated:
            continue
        try:
            by_vni[sn.spec.vni].append((sn, cidr.parse_block(sn.spec.ipv4)))
        except cidr.CIDRError:
            out.append(f"subnet: validated subnet {_ref(sn)} has a malformed CIDR {sn.spec.ipv4!r}")
    for vni, group in sorted(by_vni.items()):
        for i, (a, ba) in enumerate(group):
            for b, bb in group[i + 1 :]:
                if a.metadata.namespace != b.metadata.namespace:
                    out.append(f"subnet: validated {_ref(a)} and {_ref(b)} share VNI {vni} across namespaces")
                if ba.overlaps(bb):
                    out.append(
                        f"subnet: validated {_ref(a)} ({a.spec.ipv4}) and {_ref(b)} ({b.spec.ipv4}) overlap in VNI {vni}"
                    )
    return out


def held_addresses(nas: Iterable[NetworkAttachment], locks: Iterable[IPLock]) -> dict[int, set[int]]:
    """VNI → the addresses taken in it: locked (whether or not the lock has an owner) or shown in a status."""
    held: dict[int, set[int]] = collections.defaultdict(set)
    for lock in locks:
        t = names.parse_lock_name(lock.metadata.name)
        if t is not None:
            held[t.vni].add(t.address)
    for na in nas:
        if na.status.ipv4:
            try:
                held[na.status.address_vni].add(cidr.ip_to_int(na.status.ipv4))
            except ValueError:
                continue
    return held


def ownerless_locks(locks: Iterable[IPLock]) -> list[str]:
    """Addresses held by IPLocks that no attachment controls (left by an orphaning deletion or made by hand):
    not a violation, but taken until someone deletes the lock."""
    return [f"{_ref(lk)}" for lk in locks if lk.metadata.controller_ref() is None]


def readiness_violations(
    nas: Iterable[NetworkAttachment],
    subnets: Iterable[Subnet],
    locks: Iterable[IPLock] = (),
    *,
    require_implemented: bool = True,
) -> list[str]:
    """NAs that should be ready (their subnet is validated and has free addresses) but are not.

    An address is free when no IPLock holds it — one without an owner holds it too — and no status shows it.
    """
    nas = list(nas)
    subnet_map = {(s.metadata.namespace, s.metadata.name): s for s in subnets}
    held = held_addresses(nas, locks)
    free: dict[tuple[str, str], bool] = {}
    out: list[str] = []
    for na in nas:
        sn = subnet_map.get((na.metadata.namespace, na.spec.subnet))
        if sn is None or not sn.status.validated:
            continue
        try:
            block = cidr.parse_block(sn.spec.ipv4)
        except cidr.CIDRError:
            continue
        if not na.status.ipv4:
            key = (na.metadata.namespace, na.spec.subnet)
            if key not in free:
                lo, hi = block.assignable()
                taken = sum(1 for a in held.get(sn.spec.vni, ()) if lo <= a <= hi)
                free[key] = taken < hi - lo + 1
            if free[key] and na.metadata.deletion_timestamp is None:
                out.append(f"ready: NA {_ref(na)} has no address although subnet {_ref(sn)} has free addresses")
            continue
        if require_implemented and not na.is_ready():
            st = na.status
            missing = [f for f, v in (("macAddress", st.mac_address), ("ifcName", st.ifc_name), ("hostIP", st.host_ip))
                       if not v]  # fmt: skip
            errs = [*st.errors.ipam, *st.errors.host]
            why = f"missing {', '.join(missing)}" if missing else f"errors: {'; '.join(errs)}"
            out.append(f"ready: NA {_ref(na)} is addressed but not ready ({why})")
    return out
