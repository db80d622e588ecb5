"""The OVS fabric in process against a real switch: uniqueness, batching, error attribution, idempotent deletes.

One simulated host (`kos.testing.ovs.Lab`: a namespace with its own ovsdb-server and
ovs-vswitchd, userspace datapath); root only, skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kos.api import names
from kos.fabric import flows
from kos.fabric.interface import DuplicateInterface, LocalNetIfc, RemoteNetIfc
from kos.fabric.ovs.fabric import OVSFabric, OVSSettings
from kos.fabric.ovs.ofctl import FlowBatcher, OfctlError
from kos.testing import ovs as ovslab

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def host() -> Iterator[ovslab.Host]:
    why = ovslab.missing()
    if why:
        print(f"OVS fabric tests skipped: {why}")
        pytest.skip(f"OVS fabric tests: {why}")
    with ovslab.Lab(Path(tempfile.mkdtemp(prefix="kos-ovsf-")), ["solo"], prefix=f"kf{os.getpid() % 100000}") as lab:
        yield lab.hosts[0]


async def open_fabric(h: ovslab.Host) -> OVSFabric:
    f = await OVSFabric.open("solo", h.ip, OVSSettings(ovsdb=h.ovsdb, rundir=str(h.dir), datapath="netdev"))
    await f.list_local_ifcs()
    await f.list_remote_ifcs()
    return f


def local(vni: int, ip: str) -> LocalNetIfc:
    return LocalNetIfc(names.interface_name(vni, ip), vni, names.mac_address(vni, ip), ip)


def remote(vni: int, ip: str) -> RemoteNetIfc:
    return RemoteNetIfc(vni, names.mac_address(vni, ip), ip, "192.168.99.9")


async def test_concurrent_creates_of_one_pair_exactly_one_wins(host: ovslab.Host) -> None:
    f = await open_fabric(host)
    try:
        ifc = local(0x501, "10.5.0.1")
        outcomes = await asyncio.gather(f.create_local_ifc(ifc), f.create_remote_ifc(remote(0x501, "10.5.0.1")),
                                        f.create_local_ifc(ifc), return_exceptions=True)  # fmt: skip
        assert sum(o is None for o in outcomes) == 1
        assert all(isinstance(o, DuplicateInterface) for o in outcomes if o is not None)
        assert host.ports().count(ifc.name) == 1
        await f.delete_local_ifc(ifc)
        assert ifc.name not in host.ports()
        await f.delete_local_ifc(ifc)  # already gone: still fine
        await f.delete_remote_ifc(remote(0x501, "10.5.0.9"))  # never there: fine too
    finally:
        await f.close()


async def test_concurrent_calls_share_processes_and_transactions(host: ovslab.Host) -> None:
    f = await open_fabric(host)
    try:
        rs = [remote(0x502, f"10.5.1.{i}") for i in range(1, 201)]
        ls = [local(0x503, f"10.5.2.{i}") for i in range(1, 11)]
        p0, t0 = f.ofctl.processes, f.db.transactions
        await asyncio.gather(*(f.create_remote_ifc(r) for r in rs), *(f.create_local_ifc(i) for i in ls))
        assert f.ofctl.processes - p0 <= 4, "210 callers, a handful of ovs-ofctl processes"
        assert f.db.transactions - t0 <= 3, "10 ports, a transaction or two"
        have = {ln.split("cookie=")[1].split(",")[0] for ln in host.flows() if "cookie=" in ln}
        assert {f"{flows.cookie(flows.COOKIE_REMOTE, r.guest_mac):#x}" for r in rs} <= have
        assert set(host.ports()) >= {i.name for i in ls}
        await asyncio.gather(*(f.delete_remote_ifc(r) for r in rs), *(f.delete_local_ifc(i) for i in ls))
        assert not set(host.ports()) & {i.name for i in ls}
        assert not any("tun_id=0x502" in ln or "tun_id=0x503" in ln for ln in host.flows())
    finally:
        await f.close()


async def test_a_bad_member_fails_alone_on_a_real_switch(host: ovslab.Host) -> None:
    f = await open_fabric(host)
    try:
        fb = FlowBatcher(f.ofctl)

        def good(i: int) -> list[str]:
            return [f"add table=1,priority=7,cookie={0x700 + i:#x},dl_dst=00:00:00:00:07:{i:02x},actions=drop"]

        members = [good(1), ["add table=1,priority=7,bogus=1,actions=drop"], good(2),
                   ["add table=1,priority=7,dl_dst=00:00:00:00:07:99,actions=group:7"], good(3)]  # fmt: skip
        outcomes = await asyncio.gather(*(fb.apply(m) for m in members), return_exceptions=True)
        assert [o is None for o in outcomes] == [True, False, True, False, True]
        assert isinstance(outcomes[1], OfctlError) and "bogus" in str(outcomes[1])  # named by line
        assert isinstance(outcomes[3], OfctlError) and "OFPBAC_BAD_OUT_GROUP" in str(outcomes[3])  # by halving
        installed = [ln for ln in host.flows() if "priority=7" in ln]
        assert len(installed) == 3 and not any("07:99" in ln for ln in installed)
        host.ofctl("del-flows", host.mgmt_socket, "table=1,dl_dst=00:00:00:00:07:00/ff:ff:ff:ff:ff:00")
    finally:
        await f.close()
