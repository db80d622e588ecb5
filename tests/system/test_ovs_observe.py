"""kos.fabric.ovs.observe on a real switch: it reads back exactly the interfaces the fabric made, changes
nothing, and reports a lost flow, a stale flow and a broken port as differences (kos demo --fabric ovs's fabric
check). One simulated host (`kos.testing.ovs.Lab`); root only, skipped with the reason otherwise."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kos.api import names
from kos.fabric import flows
from kos.fabric.interface import LocalNetIfc, RemoteNetIfc
from kos.fabric.ovs.fabric import OVSFabric, OVSSettings
from kos.fabric.ovs.observe import observe
from kos.testing import ovs as ovslab

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def host() -> Iterator[ovslab.Host]:
    why = ovslab.missing()
    if why:
        print(f"OVS observe tests skipped: {why}")
        pytest.skip(f"OVS observe tests: {why}")
    with ovslab.Lab(Path(tempfile.mkdtemp(prefix="kos-ovso-")), ["solo"], prefix=f"ko{os.getpid() % 100000}") as lab:
        yield lab.hosts[0]


async def test_observe_reads_back_what_the_fabric_made_and_reports_damage(host: ovslab.Host) -> None:
    f = await OVSFabric.open("solo", host.ip, OVSSettings(ovsdb=host.ovsdb, rundir=str(host.dir), datapath="netdev"))
    await f.list_local_ifcs()
    await f.list_remote_ifcs()
    try:
        locals_ = [LocalNetIfc(names.interface_name(0x601, ip), 0x601, names.mac_address(0x601, ip), ip)
                   for ip in ("10.6.0.1", "10.6.0.2")]  # fmt: skip
        remotes = [RemoteNetIfc(0x601, names.mac_address(0x601, ip), ip, "192.168.99.7") for ip in ("10.6.0.3",)]
        for i in locals_:
            await f.create_local_ifc(i)
        for r in remotes:
            await f.create_remote_ifc(r)
        before = sorted(host.flows())
        seen = await observe(host.ovsdb, str(host.dir))
        assert sorted(seen.local, key=lambda i: i.guest_ip) == locals_
        assert seen.remote == remotes
        assert seen.differences == []
        assert sorted(host.flows()) == before, "observing changed nothing"

        lost = flows.cookie(flows.COOKIE_LOCAL, locals_[0].guest_mac)
        host.ofctl("del-flows", host.mgmt_socket, f"cookie={lost:#x}/-1,table=0")
        stale = flows.cookie(flows.COOKIE_LOCAL, "aa:bb:cc:dd:ee:01")
        host.ofctl("add-flow", host.mgmt_socket, f"cookie={stale:#x},table=1,priority=100,dl_dst=aa:bb:cc:dd:ee:01,"
                   "actions=drop")  # fmt: skip
        damaged = await observe(host.ovsdb, str(host.dir))
        text = "\n".join(damaged.differences)
        assert f"port {locals_[0].name}" in text and "repair" in text, text
        assert f"cookie {stale:#x}" in text, text
        assert len(damaged.local) == 2 and damaged.remote == remotes
    finally:
        await f.close()
