"""What the agent remembers of the interfaces it created or adopted, and which NA may own one.

The fabric holds interfaces; the agent must know, for each, the NA it belongs
to (by `namespace/name` key), whether its post-create command ran (a
post-delete command runs only then) and the command's report. Two NAs can name
the same (VNI, IP) for a moment (an address moving between attachments), so
the table also answers "whose interface holds this pair?" — the holder is
nudged to let go.
"""

from __future__ import annotations

import dataclasses

from kos.api.types import ExecReport, NetworkAttachment
from kos.fabric.interface import LocalNetIfc, RemoteNetIfc


def key_of(na: NetworkAttachment) -> str:
    """The work-queue key of an NA: `namespace/name`."""
    return f"{na.metadata.namespace}/{na.metadata.name}"


@dataclasses.dataclass(slots=True)
class Interface:
    """An interface this agent created or adopted, and what it must remember about it."""

    local: LocalNetIfc | None = None
    remote: RemoteNetIfc | None = None
    post_delete_exec: tuple[str, ...] = ()
    post_create_ran: bool = False
    report: ExecReport | None = None

    @property
    def vni(self) -> int:
        return self.local.vni if self.local else self.remote.vni  # type: ignore[union-attr]

    @property
    def ip(self) -> str:
        return self.local.guest_ip if self.local else self.remote.guest_ip  # type: ignore[union-attr]


class InterfaceTable:
    """NA key → its `Interface`, and (VNI, IP) → the key whose interface holds that pair."""

    __slots__ = ("by_key", "by_pair")

    def __init__(self) -> None:
        self.by_key: dict[str, Interface] = {}
        self.by_pair: dict[tuple[int, str], str] = {}

    def record(self, key: str, ifc: Interface) -> None:
        self.by_key[key] = ifc
        self.by_pair[(ifc.vni, ifc.ip)] = key

    def forget(self, key: str) -> Interface | None:
        """Drop `key`'s interface (and its pair, unless another key holds it now); the dropped one, if any."""
        ifc = self.by_key.pop(key, None)
        if ifc is not None and self.by_pair.get((ifc.vni, ifc.ip)) == key:
            del self.by_pair[(ifc.vni, ifc.ip)]
        return ifc

    def holder(self, vni: int, ip: str) -> str | None:
        return self.by_pair.get((vni, ip))

    def count(self, *, local: bool) -> int:
        """How many local (`local=True`) or remote interfaces are recorded."""
        if local:
            return sum(1 for i in self.by_key.values() if i.local)
        return sum(1 for i in self.by_key.values() if i.remote)


def can_own(ifc: Interface, att: NetworkAttachment | None, is_local: bool, node: str) -> bool:
    """Whether `att` (found in the local watch when `is_local`) is still the owner `ifc` was made for."""
    if att is None:
        return False
    st = att.status
    if ifc.local is not None:
        return is_local and att.spec.node == node and ifc.local.vni == st.address_vni and ifc.local.guest_ip == st.ipv4
    assert ifc.remote is not None
    r = ifc.remote
    return not is_local and r.vni == st.address_vni and r.guest_ip == st.ipv4 and r.host_ip == st.host_ip


def impl_differs(na: NetworkAttachment, ifc: Interface | None, host_ip: str) -> bool:
    """Whether the status of a local NA no longer shows what we implemented (someone else wrote over it)."""
    if ifc is None or ifc.local is None:
        return False
    st = na.status
    return st.ifc_name != ifc.local.name or st.mac_address != ifc.local.guest_mac or st.host_ip != host_ip
