"""Fabric implementations by name (`--fabric sim|logger|ovs`)."""

from __future__ import annotations

from typing import Any

from kos.fabric.interface import Fabric
from kos.fabric.logger import LoggerFabric
from kos.fabric.sim import SimFabric, SimNetwork

NAMES = ("sim", "logger", "ovs")


class UnknownFabric(ValueError):
    pass


async def make(name: str, *, node: str, host_ip: str, **options: Any) -> Fabric:
    if name == "sim":
        return SimFabric(options.get("network") or SimNetwork(), node, host_ip, latency=options.get("latency", 0.0),
                         state_path=options.get("state_path"))  # fmt: skip
    if name == "logger":
        return LoggerFabric(node)
    if name == "ovs":
        from kos.fabric.ovs.fabric import OVSFabric, OVSSettings  # imported here: the other fabrics need no OVS

        defaults = OVSSettings()
        return await OVSFabric.open(node, host_ip, OVSSettings(
            ovsdb=options.get("ovsdb") or defaults.ovsdb, rundir=options.get("ovs_rundir") or defaults.rundir,
            datapath=options.get("ovs_datapath") or defaults.datapath,
        ))  # fmt: skip
    raise UnknownFabric(f"unknown fabric {name!r}; choose one of {', '.join(NAMES)}")
