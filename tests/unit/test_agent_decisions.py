"""The connection agent's decisions against the in-memory fake API and the simulated fabric (no HTTP).

The agent runs whole (local watch, per-VNI watches, workers, status writer);
`quiet` is the barrier: every watch event the fake sent has been handled and
the agent's work queue is empty with nothing in progress, so what the fabric
and the fake hold then is what the agent decided.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.api import names
from kos.api.errors import conflict
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
from kos.fabric.interface import LocalNetIfc, RemoteNetIfc
from kos.fabric.sim import SimFabric, SimNetwork
from kos.testing.fakeapi import FakeAPI
from kos.testing.wait import eventually

NS = "ns"
NODE, HOST_IP = "n1", "192.0.2.1"


@pytest.fixture
async def fake() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
async def fabric() -> SimFabric:
    return SimFabric(SimNetwork(), NODE, HOST_IP)


@pytest.fixture
async def agent(fake: FakeAPI, fabric: SimFabric) -> AsyncIterator[ConnectionAgent]:
    agent = ConnectionAgent(fake, fabric, AgentSettings(NODE, HOST_IP), AgentMetricFamilies(CollectorRegistry()))
    await agent.start()
    yield agent
    await agent.stop()


async def quiet(fake: FakeAPI, agent: ConnectionAgent) -> None:
    async def idle() -> bool:
        await fake.settled()
        synced = all(vn.informer.has_synced() for vn in agent.vns.values())  # a VNI's watch has started
        return synced and len(agent.queue) == 0 and agent.queue.processing() == 0

    await eventually(idle)


async def na(fake: FakeAPI, name: str, node: str, ip: str, vni: int = 7, host_ip: str = "") -> NetworkAttachment:
    """An NA as IPAM (and, for a remote one, its node's agent) left it: addressed, maybe implemented (the fake
    keeps a created object's status)."""
    st = NetworkAttachmentStatus(ipv4=ip, address_vni=vni, lock_uid="l", host_ip=host_ip)
    return await fake.create(NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS),
                                               spec=NetworkAttachmentSpec(node=node, subnet="s1"), status=st))  # fmt: skip


def stored(fake: FakeAPI, name: str) -> NetworkAttachment:
    obj = fake.stored(NetworkAttachment, NS, name)
    assert obj is not None
    return obj


async def test_a_local_na_gets_its_interface_and_one_status_write(
    fake: FakeAPI, fabric: SimFabric, agent: ConnectionAgent
) -> None:
    await na(fake, "a", NODE, "10.0.0.5")
    before = fake.count("update_status")
    await quiet(fake, agent)
    want = LocalNetIfc(names.interface_name(7, "10.0.0.5"), 7, names.mac_address(7, "10.0.0.5"), "10.0.0.5")
    assert await fabric.list_local_ifcs() == [want]
    st = stored(fake, "a").status
    assert (st.ifc_name, st.mac_address, st.host_ip, st.errors.host) == (want.name, want.guest_mac, HOST_IP, ())
    assert fake.count("update_status") == before + 1
    agent.queue.add(f"{NS}/a")  # a resync that finds everything done writes nothing
    await quiet(fake, agent)
    assert fake.count("update_status") == before + 1


async def test_remote_interfaces_follow_the_relevance_of_their_vni(
    fake: FakeAPI, fabric: SimFabric, agent: ConnectionAgent
) -> None:
    await na(fake, "b", "n2", "10.0.0.6", host_ip="192.0.2.2")
    await na(fake, "c", "n2", "10.0.8.6", vni=8, host_ip="192.0.2.2")
    await quiet(fake, agent)
    assert await fabric.list_remote_ifcs() == [] and not agent.vns  # no local NA: nothing is relevant

    await na(fake, "a", NODE, "10.0.0.5")
    await quiet(fake, agent)
    remote_b = RemoteNetIfc(7, names.mac_address(7, "10.0.0.6"), "10.0.0.6", "192.0.2.2")
    assert await fabric.list_remote_ifcs() == [remote_b]  # VNI 7 only: c's VNI 8 is not relevant here
    assert list(agent.vns) == [7]

    moved = msgspec.structs.replace(stored(fake, "b").status, host_ip="192.0.2.3")
    await fake.update_status(msgspec.structs.replace(stored(fake, "b"), status=moved))
    await quiet(fake, agent)
    assert [r.host_ip for r in await fabric.list_remote_ifcs()] == ["192.0.2.3"]

    await fake.delete(NetworkAttachment, NS, "a")
    await quiet(fake, agent)
    assert await fabric.list_local_ifcs() == [] and await fabric.list_remote_ifcs() == []
    assert not agent.vns  # the VNI's watch stopped with its last local NA


async def test_a_conflicting_status_write_is_retried(fake: FakeAPI, agent: ConnectionAgent) -> None:
    fake.fail("update_status", lambda: conflict("networkattachments", "a", "the object has been modified"), name="a")
    await na(fake, "a", NODE, "10.0.0.5")
    await eventually(lambda: stored(fake, "a").status.ifc_name == names.interface_name(7, "10.0.0.5"))
    await quiet(fake, agent)
    assert fake.count("update_status") == 2  # the refused write, then the retry


async def test_the_sweep_clears_what_we_wrote_on_nas_that_lost_their_address(
    fake: FakeAPI, agent: ConnectionAgent
) -> None:
    await na(fake, "a", NODE, "10.0.0.5")
    await quiet(fake, agent)
    unaddressed = msgspec.structs.replace(stored(fake, "a").status, ipv4="", address_vni=0, lock_uid="")
    await fake.update_status(msgspec.structs.replace(stored(fake, "a"), status=unaddressed))
    await quiet(fake, agent)
    assert stored(fake, "a").status.ifc_name  # leaving the local watch does not clear it by itself
    await agent.status.sweep()
    st = stored(fake, "a").status
    assert (st.ifc_name, st.mac_address, st.host_ip) == ("", "", "")


async def test_a_restart_adopts_what_is_live_and_deletes_orphans(fake: FakeAPI, fabric: SimFabric) -> None:
    await na(fake, "a", NODE, "10.0.0.5")
    live = LocalNetIfc(names.interface_name(7, "10.0.0.5"), 7, names.mac_address(7, "10.0.0.5"), "10.0.0.5")
    orphan = RemoteNetIfc(9, names.mac_address(9, "10.0.9.9"), "10.0.9.9", "192.0.2.9")
    await fabric.create_local_ifc(live)
    await fabric.create_remote_ifc(orphan)
    agent = ConnectionAgent(fake, fabric, AgentSettings(NODE, HOST_IP), AgentMetricFamilies(CollectorRegistry()))
    await agent.start()
    try:
        assert await fabric.list_local_ifcs() == [live] and await fabric.list_remote_ifcs() == []
        assert f"{NS}/a" in agent.interfaces
    finally:
        await agent.stop()


async def test_post_create_commands_run_when_allowed_and_are_reported(fake: FakeAPI, fabric: SimFabric) -> None:
    settings = AgentSettings(NODE, HOST_IP, allowed_programs=frozenset({"/bin/echo"}))
    agent = ConnectionAgent(fake, fabric, settings, AgentMetricFamilies(CollectorRegistry()))
    await agent.start()
    try:
        st = NetworkAttachmentStatus(ipv4="10.0.0.5", address_vni=7, lock_uid="l")
        for name, argv in (("a", ("/bin/echo", "${ifname}", "${ipv4}")), ("b", ("/bin/false",))):
            ip = "10.0.0.5" if name == "a" else "10.0.0.6"
            spec = NetworkAttachmentSpec(node=NODE, subnet="s1", post_create_exec=argv)
            await fake.create(NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS), spec=spec,
                                                status=msgspec.structs.replace(st, ipv4=ip)))  # fmt: skip

        def reported() -> bool:
            report = stored(fake, "a").status.post_create_exec_report
            return report is not None and report.exit_status == 0

        await eventually(reported)
        report = stored(fake, "a").status.post_create_exec_report
        assert report is not None and report.std_out == f"{names.interface_name(7, '10.0.0.5')} 10.0.0.5\n"
        await quiet(fake, agent)
        b = stored(fake, "b").status
        assert b.errors.host == ("postCreate specifies non-allowed path /bin/false",)
        assert b.ifc_name and b.post_create_exec_report is None  # the interface exists; the command did not run
    finally:
        await agent.stop()
