"""What one node's OVS bridge holds, read without changing it (`kos demo --fabric ovs`'s fabric check).

A restarting agent reads its switch back the same way (reconcile.plan_local and plan_remote over the
bridge's ports and its dumped flows) and repairs what differs; here nothing is repaired: every flow mod or
port removal the plans would make is reported as a difference, so a switch that holds exactly its
interfaces' flows and nothing else shows none (invariant 3 of ARCHITECTURE §8, on a real switch).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from kos.fabric.interface import FabricError, LocalNetIfc, RemoteNetIfc
from kos.fabric.ovs.dump import parse_dump
from kos.fabric.ovs.fabric import BRIDGE, VTEP
from kos.fabric.ovs.ofctl import Ofctl
from kos.fabric.ovs.ovsdb import OVSDB
from kos.fabric.ovs.reconcile import plan_defaults, plan_local, plan_remote


@dataclasses.dataclass(frozen=True, slots=True)
class Observed:
    """A bridge's interfaces as its ports and flows show them, and what differs from a consistent switch."""

    local: list[LocalNetIfc]
    remote: list[RemoteNetIfc]
    differences: list[str]
    """One line per repair a restarting agent would make (a missing, wrong or stale flow; a broken port)."""


async def observe(ovsdb: str, rundir: str, *, bridge: str = BRIDGE, timeout: float = 10.0) -> Observed:
    """Read the bridge `bridge` through OVSDB at `ovsdb` (unix:PATH, tcp:HOST:PORT) and its OpenFlow socket
    `<rundir>/<bridge>.mgmt`. Raises FabricError if either cannot be read."""
    program = shutil.which("ovs-ofctl")
    if program is None:
        raise FabricError("ovs-ofctl not found on PATH (install Open vSwitch: openvswitch-common)")
    db = await OVSDB.connect(ovsdb, timeout=timeout)
    try:
        ports = db.ports(bridge)
    finally:
        await db.close()
    dumped = parse_dump(await Ofctl(f"unix:{os.path.join(rundir, bridge)}.mgmt", program=program).dump_flows())
    vtep = next((p.ofport for p in ports if p.name == VTEP), -1)
    local = plan_local(ports, dumped, reserved=(bridge, VTEP))
    remote = plan_remote(dumped, vtep, taken={(i.vni, i.guest_ip) for i in local.local})
    differences = [*local.notes, *remote.notes]
    if vtep <= 0:
        differences.append(f"the VXLAN port {VTEP} is missing or has no OpenFlow port number")
    defaults = plan_defaults(dumped)
    if defaults:
        differences.append(f"{len(defaults)} default flow mod(s) needed")
    return Observed(local.local, remote.remote, differences)
