"""Flows as pure functions (rendered for ovs-ofctl), and the simulated fabric's guarantees and traces."""

from __future__ import annotations

import pytest

from kos.api import names
from kos.fabric import flows
from kos.fabric.interface import DuplicateInterface, LocalNetIfc, RemoteNetIfc
from kos.fabric.sim import SimFabric, SimNetwork


def local(vni: int, ip: str) -> LocalNetIfc:
    return LocalNetIfc(names.interface_name(vni, ip), vni, names.mac_address(vni, ip), ip)


def remote(vni: int, ip: str, host: str) -> RemoteNetIfc:
    return RemoteNetIfc(vni, names.mac_address(vni, ip), ip, host)


def test_local_flows_render() -> None:
    ifc = local(0x1ABCDE, "10.1.2.3")
    got = [f.add_spec() for f in flows.local_flows(ifc, 7)]
    c = "0x1d6010203bcde"
    assert got == [
        f"table=0,priority=100,cookie={c},in_port=7,actions=set_field:0x1abcde->tun_id,goto_table:1",
        f"table=1,priority=100,cookie={c},tun_id=0x1abcde,dl_dst=d6:01:02:03:bc:de,actions=output:7",
        f"table=1,priority=110,cookie={c},arp,tun_id=0x1abcde,arp_tpa=10.1.2.3,actions=output:7",
    ]


def test_remote_flows_render_and_cookies_pair_them() -> None:
    ifc = remote(5, "10.0.0.9", "192.168.254.2")
    fs = flows.remote_flows(ifc, 10)
    assert [f.add_spec() for f in fs] == [
        "table=1,priority=100,cookie=0x2060000090005,tun_id=0x5,dl_dst=06:00:00:09:00:05,"
        "actions=set_field:192.168.254.2->tun_dst,output:10",
        "table=1,priority=110,cookie=0x2060000090005,arp,tun_id=0x5,arp_tpa=10.0.0.9,"
        "actions=set_field:192.168.254.2->tun_dst,output:10",
    ]
    c = fs[0].cookie
    assert flows.cookie_kind(c) == flows.COOKIE_REMOTE and flows.cookie_mac(c) == ifc.guest_mac
    assert {f.strict_del_spec() for f in fs} == {
        "table=1,priority=100,tun_id=0x5,dl_dst=06:00:00:09:00:05",
        "table=1,priority=110,arp,tun_id=0x5,arp_tpa=10.0.0.9",
    }
    assert [f.add_spec() for f in flows.default_flows()] == [
        "table=0,priority=0,actions=goto_table:1",
        "table=1,priority=0,actions=drop",
    ]


async def test_sim_pairs_are_unique_across_local_and_remote() -> None:
    net = SimNetwork()
    fab = SimFabric(net, "n1", "192.0.2.1")
    await fab.create_local_ifc(local(5, "10.0.0.2"))
    with pytest.raises(DuplicateInterface):
        await fab.create_remote_ifc(remote(5, "10.0.0.2", "192.0.2.9"))
    with pytest.raises(DuplicateInterface):
        await fab.create_local_ifc(local(5, "10.0.0.2"))
    await fab.create_remote_ifc(remote(6, "10.0.0.2", "192.0.2.9"))  # another VNI: fine
    await fab.delete_local_ifc(local(5, "10.0.0.2"))
    await fab.delete_local_ifc(local(5, "10.0.0.2"))  # already gone: still fine
    await fab.create_remote_ifc(remote(5, "10.0.0.2", "192.0.2.9"))
    assert len(await fab.list_remote_ifcs()) == 2 and await fab.list_local_ifcs() == []


async def two_nodes() -> tuple[SimNetwork, SimFabric, SimFabric]:
    net = SimNetwork()
    a, b = SimFabric(net, "a", "192.0.2.1"), SimFabric(net, "b", "192.0.2.2")
    # VNI 5: a1, a2 on a; b1 on b. VNI 6: b6 on b, with a1's address.
    for ifc in (local(5, "10.0.0.2"), local(5, "10.0.0.3")):
        await a.create_local_ifc(ifc)
    await b.create_local_ifc(local(5, "10.0.0.4"))
    await b.create_local_ifc(local(6, "10.0.0.2"))
    await a.create_remote_ifc(remote(5, "10.0.0.4", "192.0.2.2"))
    for ip in ("10.0.0.2", "10.0.0.3"):
        await b.create_remote_ifc(remote(5, ip, "192.0.2.1"))
    return net, a, b


async def test_trace_same_node_and_across_the_tunnel() -> None:
    net, _, _ = await two_nodes()
    src = names.interface_name(5, "10.0.0.2")
    same = net.trace("a", src, "10.0.0.3")
    assert same["reachable"] and same["node"] == "a" and same["interface"] == names.interface_name(5, "10.0.0.3")
    cross = net.trace("a", src, "10.0.0.4")
    assert cross["reachable"] and cross["node"] == "b" and cross["mac"] == names.mac_address(5, "10.0.0.4")
    assert any("tunnel 192.0.2.1 -> 192.0.2.2 (VNI 0x5)" in h for h in cross["hops"])
    back = net.trace("b", names.interface_name(5, "10.0.0.4"), "10.0.0.2")
    assert back["reachable"] and back["node"] == "a"


async def test_trace_isolation_and_drops_say_where_and_why() -> None:
    net, a, _ = await two_nodes()
    # b's VNI-6 interface has a1's address, but VNI 5 traffic never reaches it
    r = net.trace("a", names.interface_name(5, "10.0.0.3"), "10.0.0.2")
    assert r["reachable"] and r["node"] == "a"
    iso = net.trace("b", names.interface_name(6, "10.0.0.2"), "10.0.0.4")
    assert not iso["reachable"] and iso["stage"] == "arp" and "default flow" in iso["why"]
    assert iso["where"] == "b table 1"
    # remove the remote interface on a: the ARP to b's attachment now drops on a
    await a.delete_remote_ifc(remote(5, "10.0.0.4", "192.0.2.2"))
    gone = net.trace("a", names.interface_name(5, "10.0.0.2"), "10.0.0.4")
    assert not gone["reachable"] and gone["where"] == "a table 1"
    assert net.trace("a", "nope", "10.0.0.4")["stage"] == "source"


async def test_sim_state_survives_a_restart(tmp_path: object) -> None:
    import pathlib

    path = str(pathlib.Path(str(tmp_path)) / "switch.json")
    fab = SimFabric(SimNetwork(), "n1", "192.0.2.1", state_path=path)
    await fab.create_local_ifc(local(5, "10.0.0.2"))
    await fab.create_remote_ifc(remote(5, "10.0.0.3", "192.0.2.9"))
    again = SimFabric(SimNetwork(), "n1", "192.0.2.1", state_path=path)
    assert await again.list_local_ifcs() == [local(5, "10.0.0.2")]
    assert await again.list_remote_ifcs() == [remote(5, "10.0.0.3", "192.0.2.9")]
    assert again.switch.flow_count() == fab.switch.flow_count() == 2 + 3 + 2
    with pytest.raises(DuplicateInterface):
        await again.create_remote_ifc(remote(5, "10.0.0.2", "192.0.2.9"))
