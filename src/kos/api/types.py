"""Subnet, NetworkAttachment and IPLock, the three kinds of group `network.example.com/v1alpha1`; and Lease.

Lease is Kubernetes' own `coordination.k8s.io/v1` kind, served so the controller
manager can elect a leader as kube-controller-manager does (client-go
tools/leaderelection) and kubectl can show who leads.

Field names, JSON names and meanings follow the original KOS types field by field
(reference §1). A Subnet is an address block in a virtual network (VNI); a
NetworkAttachment (NA) asks for an interface on a node with an address from a
subnet; an IPLock is the lock object whose existence *is* the address assignment.
"""

from __future__ import annotations

import datetime
from typing import Final

import msgspec

from kos.api.meta import ExtendedObjectMeta, ListMeta, ObjectMeta, TopLevel, Wire

GROUP: Final = "network.example.com"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# Sections of extendedMetadata.writes, per kind (reference §1.1).
SECTION_SPEC: Final = "spec"
SECTION_STATUS: Final = "status"
SECTION_ADDRESS: Final = "status.address"
SECTION_IMPL: Final = "status.impl"
SECTION_EXEC_REPORT: Final = "status.execReport"


# --- Subnet -------------------------------------------------------------------------------------


class SubnetSpec(Wire, frozen=True):
    ipv4: str = ""
    """CIDR block of the subnet; immutable."""
    vni: int = 0
    """Virtual network identifier in [1, 2097151]; immutable."""


class SubnetStatus(Wire, frozen=True):
    validated: bool = False
    """True once the subnet validator found no conflict; stays true for the object's lifetime."""
    errors: tuple[str, ...] = ()


class Subnet(TopLevel, frozen=True, kw_only=True):
    api_version: str = API_VERSION
    kind: str = "Subnet"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    extended_metadata: ExtendedObjectMeta = msgspec.field(default_factory=ExtendedObjectMeta)
    spec: SubnetSpec
    status: SubnetStatus = msgspec.field(default_factory=SubnetStatus)


class SubnetList(TopLevel, frozen=True):
    api_version: str = API_VERSION
    kind: str = "SubnetList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Subnet] = msgspec.field(default_factory=list)


# --- NetworkAttachment --------------------------------------------------------------------------


class NetworkAttachmentSpec(Wire, frozen=True):
    node: str = ""
    """Node where the interface must appear; immutable."""
    subnet: str = ""
    """Name of a Subnet in the same namespace; immutable."""
    post_create_exec: tuple[str, ...] = ()
    """Command the node's agent runs after creating the interface; immutable."""
    post_delete_exec: tuple[str, ...] = ()
    """Command the node's agent runs after deleting the interface; the one mutable spec field."""


class NetworkAttachmentErrors(Wire, frozen=True):
    ipam: tuple[str, ...] = ()
    host: tuple[str, ...] = ()


class ExecReport(Wire, frozen=True):
    command: tuple[str, ...] = ()
    exit_status: int = 0
    start_time: datetime.datetime | None = None
    stop_time: datetime.datetime | None = None
    std_out: str = ""
    std_err: str = ""

    def equivalent(self, other: ExecReport | None) -> bool:
        """Same outcome, with times compared at whole seconds; the command is not compared (reference §1.3)."""
        if other is None:
            return False
        return (
            self.exit_status == other.exit_status
            and self.std_out == other.std_out
            and self.std_err == other.std_err
            and _seconds(self.start_time) == _seconds(other.start_time)
            and _seconds(self.stop_time) == _seconds(other.stop_time)
        )


def exec_reports_equivalent(a: ExecReport | None, b: ExecReport | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.equivalent(b)


def _seconds(t: datetime.datetime | None) -> int | None:
    return None if t is None else int(t.timestamp())


class NetworkAttachmentStatus(Wire, frozen=True):
    errors: NetworkAttachmentErrors = msgspec.field(default_factory=NetworkAttachmentErrors)
    subnet_creation_time: datetime.datetime | None = None
    address_contention: bool = False
    lock_uid: str = msgspec.field(default="", name="lockUID")
    address_vni: int = msgspec.field(default=0, name="addressVNI")
    ipv4: str = ""
    mac_address: str = ""
    ifc_name: str = ""
    host_ip: str = msgspec.field(default="", name="hostIP")
    post_create_exec_report: ExecReport | None = None


class NetworkAttachment(TopLevel, frozen=True, kw_only=True):
    api_version: str = API_VERSION
    kind: str = "NetworkAttachment"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    extended_metadata: ExtendedObjectMeta = msgspec.field(default_factory=ExtendedObjectMeta)
    spec: NetworkAttachmentSpec
    status: NetworkAttachmentStatus = msgspec.field(default_factory=NetworkAttachmentStatus)

    def is_ready(self) -> bool:
        """Addressed, implemented on its node, and without errors (ARCHITECTURE §1)."""
        s = self.status
        return bool(s.ipv4 and s.mac_address and s.ifc_name and s.host_ip and not s.errors.ipam and not s.errors.host)


class NetworkAttachmentList(TopLevel, frozen=True):
    api_version: str = API_VERSION
    kind: str = "NetworkAttachmentList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[NetworkAttachment] = msgspec.field(default_factory=list)


# --- IPLock -------------------------------------------------------------------------------------


class IPLockSpec(Wire, frozen=True):
    subnet_name: str = ""
    """Name of the subnet the address was taken from (informational)."""


class IPLock(TopLevel, frozen=True, kw_only=True):
    api_version: str = API_VERSION
    kind: str = "IPLock"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    extended_metadata: ExtendedObjectMeta = msgspec.field(default_factory=ExtendedObjectMeta)
    spec: IPLockSpec


class IPLockList(TopLevel, frozen=True):
    api_version: str = API_VERSION
    kind: str = "IPLockList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[IPLock] = msgspec.field(default_factory=list)


# --- Lease (coordination.k8s.io/v1) -------------------------------------------------------------

COORDINATION_GROUP: Final = "coordination.k8s.io"
COORDINATION_VERSION: Final = "v1"
COORDINATION_API_VERSION: Final = f"{COORDINATION_GROUP}/{COORDINATION_VERSION}"
MICRO_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
"""Kubernetes' MicroTime on the wire (RFC 3339 with exactly six fraction digits, UTC: metav1.RFC3339Micro)."""


LEADER_ELECTION_NAMESPACE: Final = "kube-system"
"""Where the controller manager's Lease lives by default, as kube-controller-manager's (the built-in policy
grants the controller manager its Leases in this namespace only)."""


def micro_time(t: datetime.datetime) -> str:
    """`t` (aware) as a MicroTime string, e.g. `2026-12-06T12:00:00.000000Z`."""
    return t.astimezone(datetime.UTC).strftime(MICRO_TIME_FORMAT)


def parse_micro_time(s: str) -> datetime.datetime:
    """A MicroTime (or any RFC 3339 time) as an aware datetime; ValueError for anything else."""
    t = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"{s!r} has no time zone")
    return t


class LeaseSpec(Wire, frozen=True):
    """k8s.io/api/coordination/v1 LeaseSpec; times are MicroTime strings (`micro_time`), kept as sent."""

    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int | None = None
    strategy: str | None = None
    preferred_holder: str | None = None


class Lease(TopLevel, frozen=True, kw_only=True):
    api_version: str = COORDINATION_API_VERSION
    kind: str = "Lease"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: LeaseSpec = msgspec.field(default_factory=LeaseSpec)


class LeaseList(TopLevel, frozen=True):
    api_version: str = COORDINATION_API_VERSION
    kind: str = "LeaseList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Lease] = msgspec.field(default_factory=list)


Object = Subnet | NetworkAttachment | IPLock | Lease
"""Any object of the four kinds."""
