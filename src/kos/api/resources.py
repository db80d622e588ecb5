"""The resource table: everything generic code needs to know about each kind, in one place.

HTTP handlers, the watch cache, discovery, OpenAPI, the client and kubectl's
tables are all driven by this table instead of per-kind code (no codegen).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from kos.api.types import (
    COORDINATION_GROUP,
    COORDINATION_VERSION,
    GROUP,
    VERSION,
    IPLock,
    IPLockList,
    Lease,
    LeaseList,
    NetworkAttachment,
    NetworkAttachmentList,
    Object,
    Subnet,
    SubnetList,
)

FieldGetter = Callable[[Any], str]


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # OpenAPI type of the cell: string, integer, boolean, date
    description: str
    cell: Callable[[Any], Any]
    priority: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    object_type: type[Object]
    list_type: type[Any]
    has_status: bool
    selectable: dict[str, FieldGetter]
    """Field selectors this kind supports, each with how to read the field as a string."""
    indexed: tuple[str, ...]
    """Selectable fields the apiserver indexes watchers and lists by, most selective first."""
    columns: tuple[Column, ...]
    categories: tuple[str, ...] = ("all", "kos")
    namespaced: bool = True
    group: str = GROUP
    version: str = VERSION
    api_version: str = dataclasses.field(init=False)
    """`group/version` of the kind, e.g. `network.example.com/v1alpha1`."""
    prefix: str = dataclasses.field(init=False)
    """The path its group-version is served under, e.g. `/apis/coordination.k8s.io/v1`."""
    qualified: str = dataclasses.field(init=False)
    """`plural.group`, as Kubernetes names a resource in messages (`leases.coordination.k8s.io`)."""

    def __post_init__(self) -> None:  # computed once: the request path reads them on every call
        object.__setattr__(self, "api_version", f"{self.group}/{self.version}")
        object.__setattr__(self, "prefix", f"/apis/{self.group}/{self.version}")
        object.__setattr__(self, "qualified", f"{self.plural}.{self.group}")

    def field_values(self, obj: Any) -> dict[str, str]:
        return {name: get(obj) for name, get in self.selectable.items()}

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


def _meta_fields() -> dict[str, FieldGetter]:
    return {
        "metadata.name": lambda o: o.metadata.name,
        "metadata.namespace": lambda o: o.metadata.namespace,
    }


def _na_ready(na: NetworkAttachment) -> str:
    return "True" if na.is_ready() else "False"


SUBNETS: Final = Resource(
    kind="Subnet",
    plural="subnets",
    singular="subnet",
    short_names=("sn",),
    object_type=Subnet,
    list_type=SubnetList,
    has_status=True,
    selectable={**_meta_fields(), "spec.vni": lambda o: str(o.spec.vni)},
    indexed=("metadata.name", "spec.vni", "metadata.namespace"),
    columns=(
        Column("VNI", "integer", "Virtual network identifier", lambda o: o.spec.vni),
        Column("CIDR", "string", "IPv4 block of the subnet", lambda o: o.spec.ipv4),
        Column("Validated", "boolean", "Whether the subnet validator accepted it", lambda o: o.status.validated),
        Column("Errors", "string", "Why validation failed", lambda o: "; ".join(o.status.errors), priority=1),
    ),
)

NETWORK_ATTACHMENTS: Final = Resource(
    kind="NetworkAttachment",
    plural="networkattachments",
    singular="networkattachment",
    short_names=("na",),
    object_type=NetworkAttachment,
    list_type=NetworkAttachmentList,
    has_status=True,
    selectable={
        **_meta_fields(),
        "spec.node": lambda o: o.spec.node,
        "spec.subnet": lambda o: o.spec.subnet,
        "status.ipv4": lambda o: o.status.ipv4,
        "status.hostIP": lambda o: o.status.host_ip,
        "status.addressVNI": lambda o: str(o.status.address_vni),
    },
    indexed=("metadata.name", "spec.node", "status.addressVNI", "spec.subnet", "metadata.namespace"),
    columns=(
        Column("Subnet", "string", "Subnet the address comes from", lambda o: o.spec.subnet),
        Column("Node", "string", "Node that hosts the interface", lambda o: o.spec.node),
        Column("IPv4", "string", "Assigned address", lambda o: o.status.ipv4),
        Column("MAC", "string", "Guest MAC address", lambda o: o.status.mac_address),
        Column("HostIP", "string", "Address of the hosting node", lambda o: o.status.host_ip),
        Column("Ready", "string", "Addressed and implemented without errors", _na_ready),
        Column("VNI", "integer", "VNI of the address", lambda o: o.status.address_vni, priority=1),
        Column("Interface", "string", "Linux interface name", lambda o: o.status.ifc_name, priority=1),
        Column(
            "Errors",
            "string",
            "IPAM and host errors",
            lambda o: "; ".join([*o.status.errors.ipam, *o.status.errors.host]),
            priority=1,
        ),
    ),
)

IPLOCKS: Final = Resource(
    kind="IPLock",
    plural="iplocks",
    singular="iplock",
    short_names=("ipl",),
    object_type=IPLock,
    list_type=IPLockList,
    has_status=False,
    selectable=_meta_fields(),
    indexed=("metadata.name", "metadata.namespace"),
    columns=(
        Column("Subnet", "string", "Subnet the address was taken from", lambda o: o.spec.subnet_name),
        Column(
            "Owner",
            "string",
            "Attachment holding the address",
            lambda o: ref.name if (ref := o.metadata.controller_ref()) else "",
        ),
    ),
)

LEASES: Final = Resource(
    kind="Lease",
    plural="leases",
    singular="lease",
    short_names=(),
    object_type=Lease,
    list_type=LeaseList,
    has_status=False,
    selectable=_meta_fields(),
    indexed=("metadata.name", "metadata.namespace"),
    columns=(Column("Holder", "string", "The current holder of the lease", lambda o: o.spec.holder_identity or ""),),
    categories=(),
    group=COORDINATION_GROUP,
    version=COORDINATION_VERSION,
)
"""kube-apiserver's Lease, with its printer column (pkg/printers/internalversion: NAME HOLDER AGE)."""

ALL: Final = (SUBNETS, NETWORK_ATTACHMENTS, IPLOCKS, LEASES)
BY_PLURAL: Final = {r.plural: r for r in ALL}
BY_KIND: Final = {r.kind: r for r in ALL}
BY_TYPE: Final[dict[type[Any], Resource]] = {r.object_type: r for r in ALL}
GROUP_VERSIONS: Final = tuple(dict.fromkeys((r.group, r.version) for r in ALL))
"""The served group-versions, kos's own first: (group, version)."""
PREFIXES: Final = tuple(f"/apis/{g}/{v}" for g, v in GROUP_VERSIONS)
