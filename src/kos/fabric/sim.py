"""The simulated fabric: per-node OpenFlow tables in memory, built from the same flows as OVS, and packet traces.

Each node has a `SimSwitch` (ports, a VXLAN port, flow tables) holding exactly
the flows `flows.py` produces — so a trace exercises the real pipeline design.
A `SimNetwork` connects the switches of one process by host IP, the way the
underlay does, so `trace(node, interface, IP)` can follow a packet from an
attachment's port through its node's tables, across the tunnel and through the
remote node's tables: ARP first (broadcast; the ARP flow carries it to its
owner), then a unicast frame to the MAC that owner answers with. The result is
where it was delivered, or where and why it was dropped. This makes
connectivity and isolation testable at 1,000 nodes without OVS.

An optional per-operation latency, on an injected clock, imitates a real switch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

import msgspec

from kos.fabric import flows
from kos.fabric.flows import Flow
from kos.fabric.interface import LocalNetIfc, Pairs, RemoteNetIfc
from kos.util.clock import REAL_CLOCK, Clock

VTEP_PORT = 1
BROADCAST = "ff:ff:ff:ff:ff:ff"
MAX_HOPS = 16


@dataclasses.dataclass(frozen=True, slots=True)
class Delivered:
    node: str
    port: str
    hops: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Dropped:
    node: str
    where: str
    why: str
    hops: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return False


Outcome = Delivered | Dropped


@dataclasses.dataclass(slots=True)
class _Packet:
    in_port: int
    dl_dst: str
    arp: bool
    arp_tpa: str
    tun_id: int | None = None
    tun_dst: str = ""


class SimSwitch:
    """One node's bridge: ports, flow tables, and the (VNI, IP) guarantee."""

    def __init__(self, node: str, host_ip: str) -> None:
        self.node = node
        self.host_ip = host_ip
        self.ports: dict[str, int] = {"vtep": VTEP_PORT}
        self._next_port = 2
        self.by_cookie: dict[int, list[Flow]] = {0: flows.default_flows()}
        self._tables: dict[int, list[Flow]] | None = None
        self._exact: dict[tuple[int, str, str, str], list[Flow]] = {}
        self._other: dict[int, list[Flow]] = {}
        self.local: dict[str, LocalNetIfc] = {}
        self.remote: dict[tuple[int, str], RemoteNetIfc] = {}
        self.pairs = Pairs()

    # --- switch state ------------------------------------------------------------------------

    def add_port(self, name: str) -> int:
        p = self.ports.get(name)
        if p is None:
            p = self.ports[name] = self._next_port
            self._next_port += 1
        return p

    def del_port(self, name: str) -> None:
        self.ports.pop(name, None)

    def add_flows(self, fs: Iterable[Flow]) -> None:
        for f in fs:
            self.by_cookie.setdefault(f.cookie, []).append(f)
        self._tables = None

    def del_cookie(self, c: int) -> None:
        self.by_cookie.pop(c, None)
        self._tables = None

    def flow_count(self) -> int:
        return sum(len(v) for v in self.by_cookie.values())

    def tables(self) -> dict[int, list[Flow]]:
        if self._tables is None:
            t: dict[int, list[Flow]] = {}
            self._exact, self._other = {}, {}
            for fs in self.by_cookie.values():
                for f in fs:
                    t.setdefault(f.table, []).append(f)
                    key = _exact_key(f)
                    if key is None:
                        self._other.setdefault(f.table, []).append(f)
                    else:
                        self._exact.setdefault(key, []).append(f)
            for v in (*t.values(), *self._other.values()):
                v.sort(key=lambda f: -f.priority)
            self._tables = t
        return self._tables

    def dump_flows(self) -> list[str]:
        return sorted(f.add_spec() for fs in self.by_cookie.values() for f in fs)

    def state(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "hostIP": self.host_ip,
            "local": [dataclasses.asdict(i) for i in sorted(self.local.values(), key=lambda i: i.name)],
            "remote": [dataclasses.asdict(r) for _, r in sorted(self.remote.items())],
            "flows": self.flow_count(),
        }

    # --- packet processing --------------------------------------------------------------------

    def _lookup(self, table: int, pkt: _Packet) -> Flow | None:
        """The highest-priority flow of `table` matching `pkt` (exact-match shapes found by index)."""
        self.tables()
        best: Flow | None = None
        tun = f"{pkt.tun_id:#x}" if pkt.tun_id is not None else ""
        keys = [(table, "in_port", str(pkt.in_port), ""), (table, "dl", tun, pkt.dl_dst)]
        if pkt.arp:
            keys.append((table, "arp", tun, pkt.arp_tpa))
        for k in keys:
            for f in self._exact.get(k, ()):
                if (best is None or f.priority > best.priority) and _flow_matches(f, pkt):
                    best = f
        for f in self._other.get(table, ()):
            if best is not None and f.priority <= best.priority:
                break
            if _flow_matches(f, pkt):
                best = f
                break
        return best


def _exact_key(f: Flow) -> tuple[int, str, str, str] | None:
    """An index key for the flow shapes `flows.py` makes; None for anything else (found by a scan)."""
    m = dict(f.match)
    if set(m) == {"in_port"}:
        return (f.table, "in_port", m["in_port"], "")
    if set(m) == {"tun_id", "dl_dst"}:
        return (f.table, "dl", m["tun_id"], m["dl_dst"])
    if set(m) == {"arp", "tun_id", "arp_tpa"}:
        return (f.table, "arp", m["tun_id"], m["arp_tpa"])
    return None


def _flow_matches(f: Flow, pkt: _Packet) -> bool:
    for field, value in f.match:
        if field == "in_port":
            if pkt.in_port != int(value):
                return False
        elif field == "tun_id":
            if pkt.tun_id != int(value, 16):
                return False
        elif field == "dl_dst":
            if pkt.dl_dst != value:
                return False
        elif field == "arp":
            if not pkt.arp:
                return False
        elif field == "arp_tpa":
            if not pkt.arp or pkt.arp_tpa != value:
                return False
        else:
            return False
    return True


class SimNetwork:
    """The switches of one process, joined by an ideal underlay keyed by host IP."""

    def __init__(self) -> None:
        self.switches: dict[str, SimSwitch] = {}
        self.by_host_ip: dict[str, SimSwitch] = {}

    def switch(self, node: str, host_ip: str) -> SimSwitch:
        sw = self.switches.get(node)
        if sw is None:
            sw = self.switches[node] = SimSwitch(node, host_ip)
            self.by_host_ip[host_ip] = sw
        return sw

    def _run(self, sw: SimSwitch, pkt: _Packet, hops: list[str]) -> Outcome:
        table = flows.TABLE_CLASSIFY
        for _ in range(MAX_HOPS):
            f = sw._lookup(table, pkt)
            where = f"{sw.node} table {table}"
            if f is None:
                return Dropped(sw.node, where, "no flow matches", tuple(hops))
            hops.append(f"{where}: {f.matches() or '*'} -> {','.join(f.actions)}")
            next_table = None
            for action in f.actions:
                name, _, arg = action.partition(":")
                if name == "drop":
                    return Dropped(sw.node, where, "dropped by the table's default flow", tuple(hops))
                if name == "set_field":
                    value, _, target = arg.partition("->")
                    if target == "tun_id":
                        pkt.tun_id = int(value, 16)
                    elif target == "tun_dst":
                        pkt.tun_dst = value
                elif name == "goto_table":
                    next_table = int(arg)
                elif name == "output":
                    port = int(arg)
                    if port == VTEP_PORT:
                        remote = self.by_host_ip.get(pkt.tun_dst)
                        if remote is None:
                            return Dropped(sw.node, where, f"no node has host IP {pkt.tun_dst!r}", tuple(hops))
                        hops.append(f"tunnel {sw.host_ip} -> {pkt.tun_dst} (VNI {pkt.tun_id:#x})")
                        return self._run(remote, _Packet(VTEP_PORT, pkt.dl_dst, pkt.arp, pkt.arp_tpa, pkt.tun_id),
                                         hops)  # fmt: skip
                    names = [n for n, p in sw.ports.items() if p == port]
                    if not names:
                        return Dropped(sw.node, where, f"output to port {port}, which does not exist", tuple(hops))
                    return Delivered(sw.node, names[0], tuple(hops))
            if next_table is None:
                return Dropped(sw.node, where, "the flow has no output", tuple(hops))
            table = next_table
        return Dropped(sw.node, f"{sw.node} table {table}", "too many hops", tuple(hops))

    def trace(self, node: str, ifc_name: str, dst_ip: str) -> dict[str, Any]:
        """Can the attachment on `node`'s interface `ifc_name` reach `dst_ip`? ARP, then unicast."""
        sw = self.switches.get(node)
        if sw is None:
            return {"reachable": False, "stage": "source", "why": f"no node {node!r} in this simulation"}
        src = sw.local.get(ifc_name)
        port = sw.ports.get(ifc_name)
        if src is None or port is None:
            return {"reachable": False, "stage": "source", "why": f"node {node} has no local interface {ifc_name!r}"}
        arp = self._run(sw, _Packet(port, BROADCAST, True, dst_ip), [])
        if isinstance(arp, Dropped):
            return {"reachable": False, "stage": "arp", "where": arp.where, "why": arp.why, "hops": list(arp.hops)}
        owner = self.switches[arp.node].local.get(arp.port)
        if owner is None:
            return {"reachable": False, "stage": "arp", "why": f"ARP reached {arp.node}/{arp.port}, not an interface"}
        if owner.guest_ip != dst_ip or owner.vni != src.vni:
            return {"reachable": False, "stage": "arp",
                    "why": f"ARP reached {arp.node}/{arp.port} ({owner.guest_ip}, VNI {owner.vni}), not {dst_ip}"}  # fmt: skip
        # the owner answers the ARP with its MAC; the reply travels back the same way (an ARP for the source's IP)
        reply_port = self.switches[arp.node].ports[arp.port]
        reply = self._run(self.switches[arp.node], _Packet(reply_port, src.guest_mac, True, src.guest_ip), [])
        if isinstance(reply, Dropped) or (reply.node, reply.port) != (node, ifc_name):
            why = reply.why if isinstance(reply, Dropped) else f"reached {reply.node}/{reply.port}"
            return {"reachable": False, "stage": "arp-reply", "why": why, "hops": list(reply.hops)}
        data = self._run(sw, _Packet(port, owner.guest_mac, False, ""), [])
        if isinstance(data, Dropped):
            return {"reachable": False, "stage": "unicast", "where": data.where, "why": data.why,
                    "hops": list(data.hops)}  # fmt: skip
        if (data.node, data.port) != (arp.node, arp.port):
            return {"reachable": False, "stage": "unicast", "why": f"delivered to {data.node}/{data.port} instead"}
        return {"reachable": True, "node": data.node, "interface": data.port, "mac": owner.guest_mac,
                "hops": list(arp.hops) + list(data.hops)}  # fmt: skip


class SimFabric:
    """The `sim` fabric of one node: the Fabric protocol over a SimSwitch.

    With `state_path`, the switch's state is saved (atomically) after every change and
    loaded at start, so it outlives the agent process as a real switch does — what
    agent-restart tests need.
    """

    name = "sim"

    def __init__(
        self,
        network: SimNetwork,
        node: str,
        host_ip: str,
        *,
        latency: float = 0.0,
        state_path: str | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        """`latency`: seconds of `clock` each create and delete takes (a real switch's time), 0 for none."""
        self.switch = network.switch(node, host_ip)
        self.latency = latency
        self.clock = clock
        self.state_path = state_path
        if state_path is not None and os.path.exists(state_path):
            self._load(state_path)

    def _load(self, path: str) -> None:
        with open(path, "rb") as f:
            state = msgspec.json.decode(f.read())
        sw = self.switch
        for i in state.get("local", []):
            ifc = LocalNetIfc(**i)
            sw.pairs.take(ifc.vni, ifc.guest_ip)
            sw.add_flows(flows.local_flows(ifc, sw.add_port(ifc.name)))
            sw.local[ifc.name] = ifc
        for r in state.get("remote", []):
            rifc = RemoteNetIfc(**r)
            sw.pairs.take(rifc.vni, rifc.guest_ip)
            sw.add_flows(flows.remote_flows(rifc, VTEP_PORT))
            sw.remote[(rifc.vni, rifc.guest_ip)] = rifc

    def _save(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(msgspec.json.encode(self.switch.state()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    async def _delay(self) -> None:
        if self.latency > 0:
            await self.clock.sleep(self.latency)

    async def create_local_ifc(self, ifc: LocalNetIfc) -> None:
        sw = self.switch
        sw.pairs.take(ifc.vni, ifc.guest_ip)
        try:
            await self._delay()
            port = sw.add_port(ifc.name)
            sw.add_flows(flows.local_flows(ifc, port))
            sw.local[ifc.name] = ifc
            self._save()
        except BaseException:
            sw.pairs.release(ifc.vni, ifc.guest_ip)
            raise

    async def delete_local_ifc(self, ifc: LocalNetIfc) -> None:
        sw = self.switch
        await self._delay()
        sw.del_cookie(flows.cookie(flows.COOKIE_LOCAL, ifc.guest_mac))
        sw.del_port(ifc.name)
        sw.local.pop(ifc.name, None)
        sw.pairs.release(ifc.vni, ifc.guest_ip)
        self._save()

    async def create_remote_ifc(self, ifc: RemoteNetIfc) -> None:
        sw = self.switch
        sw.pairs.take(ifc.vni, ifc.guest_ip)
        try:
            await self._delay()
            sw.add_flows(flows.remote_flows(ifc, VTEP_PORT))
            sw.remote[(ifc.vni, ifc.guest_ip)] = ifc
            self._save()
        except BaseException:
            sw.pairs.release(ifc.vni, ifc.guest_ip)
            raise

    async def delete_remote_ifc(self, ifc: RemoteNetIfc) -> None:
        sw = self.switch
        await self._delay()
        sw.del_cookie(flows.cookie(flows.COOKIE_REMOTE, ifc.guest_mac))
        sw.remote.pop((ifc.vni, ifc.guest_ip), None)
        sw.pairs.release(ifc.vni, ifc.guest_ip)
        self._save()

    async def list_local_ifcs(self) -> list[LocalNetIfc]:
        return list(self.switch.local.values())

    async def list_remote_ifcs(self) -> list[RemoteNetIfc]:
        return list(self.switch.remote.values())

    async def close(self) -> None:
        pass
