"""OVSFabric: the Fabric protocol over one node's Open vSwitch bridge `kos` (ARCHITECTURE §7, reference §6.3).

Per node: bridge `kos` (`fail_mode=secure`: no flows, no forwarding; OpenFlow
1.3+ for bundles), a VXLAN port `vtep` whose VNI and remote end are set per
packet by flows (`key=flow`, `remote_ip=flow`), the two default flows, and per
local interface an OVS internal port. Flows come from `flows.py`.

How a call is carried out:
* a local create takes the (VNI, IP) pair, creates the internal port through
  OVSDB and waits until ovs-vswitchd gave it an OpenFlow port (a setup error
  is reported as it is and the port removed), then installs its three flows;
  if the flows fail, the port goes again, so nothing half-made stays;
* a local delete removes the interface's flows (by cookie) and its port; a
  remote create or delete adds or removes two flows. Deleting what is already
  gone succeeds and still removes its flows;
* concurrent calls coalesce: ports of many callers go into one OVSDB
  transaction, flows of many callers into one `ovs-ofctl --bundle` process
  (`batch.py`), and each caller gets its own outcome.

On (re)start, `list_local_ifcs` and `list_remote_ifcs` read back what the
switch holds and repair it (`reconcile.py`) before the agent does anything else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil

from kos.fabric import flows
from kos.fabric.interface import FabricError, LocalNetIfc, Pairs, RemoteNetIfc
from kos.fabric.ovs import DATAPATHS, DEFAULT_OVSDB, DEFAULT_RUNDIR, ofctl
from kos.fabric.ovs.batch import Batcher
from kos.fabric.ovs.dump import DumpedFlow, parse_dump
from kos.fabric.ovs.ofctl import FlowBatcher, Ofctl
from kos.fabric.ovs.ovsdb import OVSDB, NewPort, OVSDBRefused
from kos.fabric.ovs.reconcile import Plan, plan_defaults, plan_local, plan_remote, port_external_ids
from kos.util.log import get_logger

log = get_logger(__name__)

BRIDGE = "kos"
VTEP = "vtep"
VTEP_OPTIONS = {"remote_ip": "flow", "key": "flow"}
MAX_IFNAME = 15
"""Linux's limit; OVS silently truncates longer internal-port names (ovs-datapath.md §2)."""


@dataclasses.dataclass(frozen=True, slots=True)
class OVSSettings:
    ovsdb: str = DEFAULT_OVSDB
    """The OVSDB remote (`unix:PATH` or `tcp:HOST:PORT`)."""
    rundir: str = DEFAULT_RUNDIR
    """Where ovs-vswitchd puts the bridge's OpenFlow management socket `<bridge>.mgmt` (its OVS_RUNDIR)."""
    datapath: str = "system"
    """`system` (the kernel module) or `netdev` (userspace; no kernel module needed)."""
    bridge: str = BRIDGE
    timeout: float = 10.0
    """How long to wait for OVSDB and ovs-vswitchd before reporting an error."""
    ofctl: str = "ovs-ofctl"


class OVSFabric:
    name = "ovs"

    def __init__(
        self,
        node: str,
        host_ip: str,
        settings: OVSSettings,
        db: OVSDB,
        of: Ofctl,
        vtep_ofport: int,
        dumped: list[DumpedFlow] | None = None,
    ) -> None:
        self.node = node
        self.host_ip = host_ip
        self.settings = settings
        self.bridge = settings.bridge
        self.db = db
        self.ofctl = of
        self.vtep_ofport = vtep_ofport
        self.flow_mods = FlowBatcher(of)
        self.pairs = Pairs()
        self._listed_pairs: set[tuple[int, str]] = set()
        self._dumped = dumped
        """The switch's flows as last read, while nothing has changed them since (spares the restart two dumps)."""
        self._add_ports: Batcher[NewPort, int] = Batcher(self._add_port_batch, name="ports-add")
        self._del_ports: Batcher[str, None] = Batcher(self._del_port_batch, name="ports-del")

    @classmethod
    async def open(cls, node: str, host_ip: str, settings: OVSSettings | None = None) -> OVSFabric:
        """Connect, make the bridge, its VXLAN port and the default flows exist (idempotent; nothing live is touched)."""
        s = settings or OVSSettings()
        if s.datapath not in DATAPATHS:
            raise FabricError(f"datapath type {s.datapath!r}: choose one of {', '.join(DATAPATHS)}")
        program = shutil.which(s.ofctl)
        if program is None:
            raise FabricError(f"{s.ofctl} not found on PATH (install Open vSwitch: openvswitch-common)")
        db = await OVSDB.connect(s.ovsdb, timeout=s.timeout)
        try:
            vtep = await db.ensure_bridge(s.bridge, datapath_type=s.datapath, vtep=VTEP, vtep_options=VTEP_OPTIONS)
            of = Ofctl(f"unix:{os.path.join(s.rundir, s.bridge)}.mgmt", program=program)
            try:
                dumped = parse_dump(await of.dump_flows())
            except ofctl.OfctlError as e:
                raise FabricError(f"{e} (is --ovs-rundir the directory where ovs-vswitchd keeps {s.bridge}.mgmt, "
                                  f"its OVS_RUNDIR?)") from None  # fmt: skip
            defaults = plan_defaults(dumped)
            await of.bundle(defaults)
        except BaseException:
            await db.close()
            raise
        log.info("bridge ready", node=node, bridge=s.bridge, datapath=s.datapath, vtep_ofport=vtep,
                 flows_found=len(dumped))  # fmt: skip
        return cls(node, host_ip, s, db, of, vtep, None if defaults else dumped)

    async def close(self) -> None:
        for b in (self._add_ports, self._del_ports):
            await b.close()
        await self.flow_mods.close()
        await self.db.close()

    # --- batches -----------------------------------------------------------------------------

    async def _add_port_batch(self, ports: list[NewPort]) -> list[int | BaseException]:
        try:
            return list(await self.db.add_ports(self.bridge, ports))
        except OVSDBRefused as e:
            if len(ports) == 1:
                return [e]
            half = len(ports) // 2  # the database refused the transaction: find whose port it was
            return await self._add_port_batch(ports[:half]) + await self._add_port_batch(ports[half:])
        except FabricError as e:
            return [e] * len(ports)

    async def _apply(self, lines: list[str]) -> None:
        self._dumped = None
        await self.flow_mods.apply(lines)

    async def _dump(self) -> list[DumpedFlow]:
        if self._dumped is None:
            self._dumped = parse_dump(await self.ofctl.dump_flows())
        return self._dumped

    async def _del_port_batch(self, names: list[str]) -> list[BaseException | None]:
        try:
            await self.db.del_ports(self.bridge, names)
        except FabricError as e:
            return [e] * len(names)
        return [None] * len(names)

    # --- the Fabric protocol -----------------------------------------------------------------

    async def create_local_ifc(self, ifc: LocalNetIfc) -> None:
        if not ifc.name or len(ifc.name) > MAX_IFNAME:
            raise FabricError(f"interface name {ifc.name!r} must have 1 to {MAX_IFNAME} characters")
        self.pairs.take(ifc.vni, ifc.guest_ip)
        try:
            ofport = await self._add_ports.submit(NewPort(ifc.name, ifc.guest_mac, port_external_ids(ifc)))
            try:
                await self._apply([ofctl.add_line(f) for f in flows.local_flows(ifc, ofport)])
            except FabricError as e:
                try:
                    await self._remove_local(ifc)
                except FabricError as e2:
                    log.warning("cannot remove an interface whose flows failed", node=self.node, interface=ifc.name,
                                err=e2)  # fmt: skip
                raise FabricError(f"installing the flows of {ifc.name} failed: {e}") from e
        except BaseException:
            self.pairs.release(ifc.vni, ifc.guest_ip)
            raise

    async def _remove_local(self, ifc: LocalNetIfc) -> None:
        c = flows.cookie(flows.COOKIE_LOCAL, ifc.guest_mac)
        outcomes = await asyncio.gather(self._apply([ofctl.delete_cookie_line(c)]),
                                        self._del_ports.submit(ifc.name), return_exceptions=True)  # fmt: skip
        for o in outcomes:
            if isinstance(o, BaseException):
                raise o

    async def delete_local_ifc(self, ifc: LocalNetIfc) -> None:
        await self._remove_local(ifc)
        self.pairs.release(ifc.vni, ifc.guest_ip)

    async def create_remote_ifc(self, ifc: RemoteNetIfc) -> None:
        self.pairs.take(ifc.vni, ifc.guest_ip)
        try:
            await self._apply([ofctl.add_line(f) for f in flows.remote_flows(ifc, self.vtep_ofport)])
        except BaseException:
            self.pairs.release(ifc.vni, ifc.guest_ip)
            raise

    async def delete_remote_ifc(self, ifc: RemoteNetIfc) -> None:
        await self._apply([ofctl.delete_cookie_line(flows.cookie(flows.COOKIE_REMOTE, ifc.guest_mac))])
        self.pairs.release(ifc.vni, ifc.guest_ip)

    async def list_local_ifcs(self) -> list[LocalNetIfc]:
        dumped = await self._dump()
        plan = plan_local(self.db.ports(self.bridge), dumped, reserved=(self.bridge, VTEP))
        await self._carry_out(plan)
        for ifc in plan.local:
            if (ifc.vni, ifc.guest_ip) not in self.pairs:
                self.pairs.take(ifc.vni, ifc.guest_ip)
        self._listed_pairs = {(i.vni, i.guest_ip) for i in plan.local}
        return plan.local

    async def list_remote_ifcs(self) -> list[RemoteNetIfc]:
        dumped = await self._dump()
        plan = plan_remote(dumped, self.vtep_ofport, taken=self._listed_pairs)
        await self._carry_out(plan)
        self._dumped = None  # the restart is over: from here on every call changes flows
        for ifc in plan.remote:
            if (ifc.vni, ifc.guest_ip) not in self.pairs:
                self.pairs.take(ifc.vni, ifc.guest_ip)
        return plan.remote

    async def _carry_out(self, plan: Plan) -> None:
        for note in plan.notes:
            log.info("restart", node=self.node, note=note)
        if plan.lines:
            await self._apply(plan.lines)
        if plan.delete_ports:
            await self.db.del_ports(self.bridge, plan.delete_ports)
