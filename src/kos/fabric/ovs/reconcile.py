"""What a (re)starting agent finds on its switch, and what it must repair or remove: pure functions.

The switch outlives the agent, so after a restart (or a crash at any point) the
agent reads back what the switch holds instead of trusting anything it
remembered:

* a *local* interface is an internal port whose OVSDB `external_ids` say what
  it is for (VNI, guest IP, guest MAC). It is complete when ovs-vswitchd gave it
  an OpenFlow port (even if it also reports an error: a numbered port carries
  traffic, and a restart must never cut that); then its flows are recomputed and whatever is missing or
  different is re-added (an add with an installed flow's table, priority and
  match replaces it in place: live traffic is not interrupted). A port that
  vswitchd could not set up is half-created: it is removed with its flows;
* a *remote* interface exists only as flows: its cookie gives the MAC, the ARP
  flow gives VNI and guest IP, the `set_field:…->tun_dst` action the host.
  If all of that can be read, missing or outdated flows are repaired (e.g. the
  VXLAN port got another number); if not, its flows are stale;
* flows whose cookie belongs to no interface (a local cookie without its port,
  an unknown kind) are stale and removed. Cookie 0 holds the default flows,
  which are repaired; other cookie-0 flows are somebody else's and are left.

Two interfaces with one (VNI, IP) pair cannot both be kept (the fabric's
uniqueness guarantee); the later one is removed like a stale one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Iterable

from kos.fabric import flows
from kos.fabric.flows import Flow
from kos.fabric.interface import LocalNetIfc, RemoteNetIfc
from kos.fabric.ovs import ofctl
from kos.fabric.ovs.dump import DumpedFlow, by_cookie, canonical
from kos.fabric.ovs.ovsdb import PortRow

EXT_VNI = "kos-vni"
EXT_IP = "kos-guest-ip"
EXT_MAC = "kos-guest-mac"


def port_external_ids(ifc: LocalNetIfc) -> dict[str, str]:
    """What a local port is for, kept in OVSDB beside it."""
    return {EXT_VNI: str(ifc.vni), EXT_IP: ifc.guest_ip, EXT_MAC: ifc.guest_mac}


def local_from_port(port: PortRow) -> LocalNetIfc | None:
    """The interface a port was made for; None for ports that are not the fabric's."""
    ids = port.external_ids
    try:
        return LocalNetIfc(port.name, int(ids[EXT_VNI]), ids[EXT_MAC], ids[EXT_IP])
    except (KeyError, ValueError):
        return None


@dataclasses.dataclass(slots=True)
class Plan:
    """The outcome of reading the switch back."""

    local: list[LocalNetIfc] = dataclasses.field(default_factory=list)
    remote: list[RemoteNetIfc] = dataclasses.field(default_factory=list)
    lines: list[str] = dataclasses.field(default_factory=list)
    """Flow mods, one bundle: repairs (adds that replace in place) and removals of stale flows."""
    delete_ports: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    """What was found wrong, for the log."""


def repair_lines(expected: Iterable[Flow], have: Iterable[DumpedFlow]) -> list[str]:
    """Adds for expected flows that are missing or different; strict deletes for this cookie's other flows."""
    want = {canonical(f).key: (f, canonical(f)) for f in expected}
    got = {d.key: d for d in have}
    lines = [ofctl.add_line(f) for key, (f, c) in want.items()
             if key not in got or got[key].actions != c.actions or got[key].cookie != c.cookie]  # fmt: skip
    lines += [ofctl.delete_strict_line(d.cookie, d.table, d.priority, d.match_text)
              for key, d in got.items() if key not in want]  # fmt: skip
    return lines


def plan_defaults(dumped: Iterable[DumpedFlow]) -> list[str]:
    return repair_lines(flows.default_flows(), (d for d in dumped if d.cookie == 0 and not d.match))


def plan_local(ports: Iterable[PortRow], dumped: Iterable[DumpedFlow], *, reserved: Iterable[str] = ()) -> Plan:
    """Local interfaces from the bridge's ports; flows of local kind or unknown kinds that belong to none are stale."""
    plan = Plan()
    groups = by_cookie(dumped)
    kept: set[int] = set()
    pairs: set[tuple[int, str]] = set()
    skip = set(reserved)
    for port in ports:
        if port.name in skip:
            continue
        ifc = local_from_port(port)
        if ifc is None:
            plan.notes.append(f"port {port.name} is not the fabric's (no {EXT_VNI}/{EXT_IP}/{EXT_MAC}): left alone")
            continue
        c = flows.cookie(flows.COOKIE_LOCAL, ifc.guest_mac)
        if port.ofport <= 0:  # vswitchd never numbered it (an error, if any, says why)
            plan.delete_ports.append(port.name)
            plan.notes.append(f"port {port.name} is half-created ({port.error or f'ofport {port.ofport}'}): removed")
            continue
        if port.error:  # numbered, so it carries traffic: keep it, but say what vswitchd complained about
            plan.notes.append(f"port {port.name} (ofport {port.ofport}) reports an error, kept: {port.error}")
        if (ifc.vni, ifc.guest_ip) in pairs or c in kept:
            plan.delete_ports.append(port.name)
            plan.notes.append(f"port {port.name} duplicates VNI {ifc.vni:#x} IP {ifc.guest_ip}: removed")
            continue
        pairs.add((ifc.vni, ifc.guest_ip))
        kept.add(c)
        plan.local.append(ifc)
        fix = repair_lines(flows.local_flows(ifc, port.ofport), groups.get(c, []))
        if fix:
            plan.notes.append(f"port {port.name}: {len(fix)} flow mod(s) to repair its flows")
        plan.lines += fix
    for c in sorted(groups):
        kind = flows.cookie_kind(c)
        if c == 0 or kind == flows.COOKIE_REMOTE or c in kept:
            continue
        plan.lines.append(ofctl.delete_cookie_line(c))
        plan.notes.append(f"{len(groups[c])} stale flow(s) with cookie {c:#x}: removed")
    return plan


def remote_from_flows(c: int, group: Iterable[DumpedFlow]) -> RemoteNetIfc | None:
    """The remote interface a cookie's flows implement, if they say enough (VNI, guest IP, host)."""
    vnis, ips, hosts = set(), set(), set()
    for f in group:
        tun = f.field("tun_id")
        if tun is not None:
            try:
                vnis.add(int(tun, 0))
            except ValueError:
                return None
        if f.field("arp") is not None and f.field("arp_tpa") is not None:
            ips.add(f.field("arp_tpa"))
        if f.tun_dst is not None:
            hosts.add(f.tun_dst)
    if len(vnis) != 1 or len(ips) != 1 or len(hosts) != 1:
        return None
    ip = ips.pop()
    assert ip is not None
    return RemoteNetIfc(vnis.pop(), flows.cookie_mac(c), ip, hosts.pop())


def plan_remote(dumped: Iterable[DumpedFlow], vtep_ofport: int, *, taken: Container[tuple[int, str]] = ()) -> Plan:
    """Remote interfaces from the flows with a remote cookie; unreadable ones, and pairs already `taken`, are stale."""
    plan = Plan()
    pairs: set[tuple[int, str]] = set()
    for c, group in sorted(by_cookie(dumped).items()):
        if c == 0 or flows.cookie_kind(c) != flows.COOKIE_REMOTE:
            continue
        ifc = remote_from_flows(c, group)
        if ifc is None or (ifc.vni, ifc.guest_ip) in pairs or (ifc.vni, ifc.guest_ip) in taken:
            why = "cannot be read back" if ifc is None else f"duplicate VNI {ifc.vni:#x} IP {ifc.guest_ip}"
            plan.lines.append(ofctl.delete_cookie_line(c))
            plan.notes.append(f"{len(group)} remote flow(s) with cookie {c:#x} ({why}): removed")
            continue
        pairs.add((ifc.vni, ifc.guest_ip))
        plan.remote.append(ifc)
        fix = repair_lines(flows.remote_flows(ifc, vtep_ofport), group)
        if fix:
            plan.notes.append(f"remote {ifc.guest_mac}: {len(fix)} flow mod(s) to repair its flows")
        plan.lines += fix
    return plan
