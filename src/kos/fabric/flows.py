"""Which OpenFlow flows implement an interface: pure functions, shared by the OVS and the simulated fabric.

Pipeline (ARCHITECTURE §7, reference §6.3, tested recipe in ovs-datapath.md):

    table 0 (classify): in_port=<local port> → set tun_id=<VNI>, goto table 1      priority 100
                        anything else (from vtep: tun_id from the VXLAN header) → goto table 1   priority 0
    table 1 (forward):  tun_id=<VNI>, arp, arp_tpa=<IP> → to the owner         priority 110
                        tun_id=<VNI>, dl_dst=<MAC>       → to the owner         priority 100
                        anything else → drop                                    priority 0

"To the owner" is `output:<port>` for a local interface, or `set tun_dst=<host>,
output:<vtep>` for a remote one. ARP gets the higher priority because an ARP
reply matches both flows (ARCHITECTURE §12.15). Every flow of one interface
carries the same cookie, `kind << 48 | MAC`, so the interface's flows are found,
read back and deleted by cookie (§12.14); only the tunnel destination is parsed
from the flow text.
"""

from __future__ import annotations

import dataclasses

from kos.fabric.interface import LocalNetIfc, RemoteNetIfc

TABLE_CLASSIFY = 0
TABLE_FORWARD = 1
PRIORITY_DEFAULT = 0
PRIORITY_PORT = 100
PRIORITY_UNICAST = 100
PRIORITY_ARP = 110

COOKIE_LOCAL = 1
COOKIE_REMOTE = 2
_MAC_MASK = (1 << 48) - 1


@dataclasses.dataclass(frozen=True, slots=True)
class Flow:
    table: int
    priority: int
    match: tuple[tuple[str, str], ...]
    """Ordered (field, value) pairs; `("arp", "")` is the protocol shorthand."""
    actions: tuple[str, ...]
    cookie: int = 0

    def matches(self) -> str:
        return ",".join(f if not v else f"{f}={v}" for f, v in self.match)

    def add_spec(self) -> str:
        """The line `ovs-ofctl add-flows` takes."""
        m = self.matches()
        cookie = f"cookie={self.cookie:#x}," if self.cookie else ""
        return f"table={self.table},priority={self.priority},{cookie}{m + ',' if m else ''}actions={','.join(self.actions)}"

    def strict_del_spec(self) -> str:
        m = self.matches()
        return f"table={self.table},priority={self.priority}{',' + m if m else ''}"


def mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def int_mac(value: int) -> str:
    h = f"{value & _MAC_MASK:012x}"
    return ":".join(h[i : i + 2] for i in range(0, 12, 2))


def cookie(kind: int, mac: str) -> int:
    return (kind << 48) | mac_int(mac)


def cookie_kind(c: int) -> int:
    return c >> 48


def cookie_mac(c: int) -> str:
    return int_mac(c)


def vni_hex(vni: int) -> str:
    return f"{vni:#x}"


def default_flows() -> list[Flow]:
    return [
        Flow(TABLE_CLASSIFY, PRIORITY_DEFAULT, (), (f"goto_table:{TABLE_FORWARD}",)),
        Flow(TABLE_FORWARD, PRIORITY_DEFAULT, (), ("drop",)),
    ]


def local_flows(ifc: LocalNetIfc, ofport: int) -> list[Flow]:
    c = cookie(COOKIE_LOCAL, ifc.guest_mac)
    v = vni_hex(ifc.vni)
    out = (f"output:{ofport}",)
    return [
        Flow(TABLE_CLASSIFY, PRIORITY_PORT, (("in_port", str(ofport)),),
             (f"set_field:{v}->tun_id", f"goto_table:{TABLE_FORWARD}"), c),
        Flow(TABLE_FORWARD, PRIORITY_UNICAST, (("tun_id", v), ("dl_dst", ifc.guest_mac)), out, c),
        Flow(TABLE_FORWARD, PRIORITY_ARP, (("arp", ""), ("tun_id", v), ("arp_tpa", ifc.guest_ip)), out, c),
    ]  # fmt: skip


def remote_flows(ifc: RemoteNetIfc, vtep_ofport: int) -> list[Flow]:
    c = cookie(COOKIE_REMOTE, ifc.guest_mac)
    v = vni_hex(ifc.vni)
    out = (f"set_field:{ifc.host_ip}->tun_dst", f"output:{vtep_ofport}")
    return [
        Flow(TABLE_FORWARD, PRIORITY_UNICAST, (("tun_id", v), ("dl_dst", ifc.guest_mac)), out, c),
        Flow(TABLE_FORWARD, PRIORITY_ARP, (("arp", ""), ("tun_id", v), ("arp_tpa", ifc.guest_ip)), out, c),
    ]
