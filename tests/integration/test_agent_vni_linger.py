"""A VNI's watch lingers after the VNI stops being relevant on a node, and the fabric stays exact throughout.

A real apiserver and controller manager (IPAM) in-process, and two connection
agents with the sim fabric: n1, under test, on a fake clock, and n2, whose NAs
are n1's remotes. When n1's last NA of a VNI goes, its remote interfaces must
leave n1's fabric at once (ARCHITECTURE §8, invariant 3) while the VNI's watch
stays open for the linger; if the VNI becomes relevant again within the linger,
the same watch serves it — remotes restored from its cache, including what changed
while it lingered — and no new watch (no new streaming list of the VNI) starts.
When the linger ends, the watch stops. Before this change a VNI's watch was stopped
the moment it became irrelevant and a new one listed the whole VNI at the next
local NA: in the large-network benchmark that re-listing, thousands of times a
run, was what made the simulated nodes collapse at a lower rate (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.controllers.manager import ControllerManager, Settings
from kos.fabric.sim import SimFabric, SimNetwork
from kos.testing.clock import FakeClock
from kos.testing.wait import eventually
from kos.util.clock import UTC

LINGER = 30.0
HOSTS = {"n1": "192.0.2.1", "n2": "192.0.2.2"}


@pytest.fixture
async def cm(server: APIServer) -> AsyncIterator[ControllerManager]:
    c = ControllerManager(Settings(server=server.url, metrics_port=0, seed=1))
    await c.start()
    yield c
    await c.stop()


class Node:
    def __init__(self, server: APIServer, network: SimNetwork, name: str, linger: float, clock: FakeClock | None):
        self.registry = CollectorRegistry()
        self.fabric = SimFabric(network, name, HOSTS[name])
        self.client = Client(server.url, watch_mux=True)
        kw = {"clock": clock} if clock is not None else {}
        self.agent = ConnectionAgent(self.client, self.fabric, AgentSettings(name, HOSTS[name], frozenset(), 2, linger),
                                     AgentMetricFamilies(self.registry), **kw)  # fmt: skip

    def count(self, what: str) -> float:
        return self.registry.get_sample_value(f"kos_agent_vni_watch_{what}_total", {"node": self.agent.node}) or 0.0

    async def close(self) -> None:
        await self.agent.stop()
        await self.client.close()


@pytest.fixture
async def nodes(server: APIServer, cm: ControllerManager, request: pytest.FixtureRequest) -> AsyncIterator[
    tuple[Node, Node, FakeClock]
]:  # fmt: skip
    linger = getattr(request, "param", LINGER)
    clock = FakeClock(datetime.datetime.now(UTC))
    network = SimNetwork()
    n1, n2 = Node(server, network, "n1", linger, clock), Node(server, network, "n2", linger, None)
    await n1.agent.start()
    await n2.agent.start()
    yield n1, n2, clock
    await n1.close()
    await n2.close()


def subnet(ns: str, name: str, vni: int, cidr: str) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=ns), spec=SubnetSpec(vni=vni, ipv4=cidr))


def na(ns: str, name: str, node: str, sub: str) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace=ns), spec=NetworkAttachmentSpec(node=node, subnet=sub))


async def expected_remotes(client: Client, node: str) -> set[tuple[int, str, str]]:
    """What invariant 3 says the node's fabric holds as remotes: the implemented NAs on other nodes of its VNIs."""
    nas, _ = await client.list(NetworkAttachment)
    mine = {a.status.address_vni for a in nas if a.spec.node == node and a.status.ipv4}
    return {(a.status.address_vni, a.status.ipv4, a.status.host_ip) for a in nas
            if a.spec.node != node and a.status.ipv4 and a.status.host_ip and a.status.address_vni in mine}  # fmt: skip


async def remotes(n: Node) -> set[tuple[int, str, str]]:
    return {(r.vni, r.guest_ip, r.host_ip) for r in await n.fabric.list_remote_ifcs()}


async def exact(client: Client, n: Node, count: int) -> bool:
    """n's fabric holds exactly the remotes it should, `count` of them, and every NA is implemented."""
    nas, _ = await client.list(NetworkAttachment)
    if not all(a.status.ipv4 and a.status.host_ip for a in nas):
        return False
    want = await expected_remotes(client, n.agent.node)
    return len(want) == count and await remotes(n) == want


async def implemented(client: Client, ns: str, name: str) -> bool:
    st = (await client.get(NetworkAttachment, ns, name)).status
    return bool(st.ipv4 and st.host_ip)


async def test_a_vni_relevant_again_within_the_linger_reuses_its_watch(
    client: Client, nodes: tuple[Node, Node, FakeClock]
) -> None:
    n1, n2, clock = nodes
    await client.create(subnet("ns1", "s7", 7, "10.7.0.0/24"))
    await client.create(subnet("ns1", "s8", 8, "10.8.0.0/24"))
    for name in ("r1", "r2"):
        await client.create(na("ns1", name, "n2", "s7"))
    await client.create(na("ns1", "other-vni", "n2", "s8"))
    await client.create(na("ns1", "a", "n1", "s7"))
    await eventually(lambda: exact(client, n1, 2))
    assert (n1.count("starts"), n1.count("stops"), n1.count("reuses")) == (1, 0, 0)
    watch = n1.agent.vns[7].informer

    # a, n1's only NA of VNI 7, goes: the remotes leave the fabric at once, the watch stays open
    await client.delete(NetworkAttachment, "ns1", "a")
    await eventually(lambda: exact(client, n1, 0))
    assert await remotes(n1) == set() and 7 not in n1.agent.vns and n1.agent.lingering[7].informer is watch

    # while it lingers, VNI 7 changes: the watch's cache follows, the fabric does not
    await client.create(na("ns1", "r3", "n2", "s7"))
    await eventually(lambda: implemented(client, "ns1", "r3"))
    await client.delete(NetworkAttachment, "ns1", "r1")
    await eventually(lambda: sorted(o.metadata.name for o in watch.lister.list()) == ["r2", "r3"])
    assert await remotes(n1) == set() and await exact(client, n1, 0)

    # VNI 7 relevant again within the linger: the same watch, the remotes as they are now, no new list
    await clock.advance(LINGER / 2)
    await client.create(na("ns1", "b", "n1", "s7"))
    await eventually(lambda: exact(client, n1, 2))
    assert n1.agent.vns[7].informer is watch and 7 not in n1.agent.lingering
    assert (n1.count("starts"), n1.count("stops"), n1.count("reuses")) == (1, 0, 1)

    # irrelevant again; the linger runs out: the watch stops, the fabric stays exact
    await client.delete(NetworkAttachment, "ns1", "b")
    await eventually(lambda: exact(client, n1, 0))
    assert 7 in n1.agent.lingering
    await clock.advance(LINGER - 1)
    await asyncio.sleep(0.05)
    assert 7 in n1.agent.lingering and n1.count("stops") == 0  # the linger counts from the last irrelevance
    await clock.advance(2)
    await eventually(lambda: 7 not in n1.agent.lingering)
    assert n1.count("stops") == 1 and watch._task is None  # stopped for good

    # relevant once more, after the linger: a new watch lists the VNI
    await client.create(na("ns1", "c", "n1", "s7"))
    await eventually(lambda: exact(client, n1, 2))
    assert n1.agent.vns[7].informer is not watch
    assert (n1.count("starts"), n1.count("stops"), n1.count("reuses")) == (2, 1, 1)
    assert n1.count("initial_objects") == 2 + 2  # r1, r2 at the first start; r2, r3 at the second


@pytest.mark.parametrize("nodes", [0.0], indirect=True)
async def test_linger_0_stops_the_watch_at_once(client: Client, nodes: tuple[Node, Node, FakeClock]) -> None:
    n1, _, _ = nodes
    await client.create(subnet("ns1", "s7", 7, "10.7.0.0/24"))
    await client.create(na("ns1", "r1", "n2", "s7"))
    await client.create(na("ns1", "a", "n1", "s7"))
    await eventually(lambda: exact(client, n1, 1))
    watch = n1.agent.vns[7].informer
    await client.delete(NetworkAttachment, "ns1", "a")
    await eventually(lambda: exact(client, n1, 0))
    await eventually(lambda: n1.count("stops") == 1)
    assert not n1.agent.lingering and watch._task is None
    await client.create(na("ns1", "b", "n1", "s7"))
    await eventually(lambda: exact(client, n1, 1))
    assert (n1.count("starts"), n1.count("reuses")) == (2, 0)


async def test_a_lingering_vni_claimed_by_another_namespace_gets_a_new_watch(
    client: Client, nodes: tuple[Node, Node, FakeClock]
) -> None:
    """VNIs are unique across namespaces at any time, but a VNI can move: its subnets deleted, recreated elsewhere."""
    n1, _, _ = nodes
    await client.create(subnet("ns1", "s7", 7, "10.7.0.0/24"))
    await client.create(na("ns1", "r1", "n2", "s7"))
    await client.create(na("ns1", "a", "n1", "s7"))
    await eventually(lambda: exact(client, n1, 1))
    old = n1.agent.vns[7].informer
    for name in ("a", "r1"):
        await client.delete(NetworkAttachment, "ns1", name)
    await client.delete(Subnet, "ns1", "s7")
    await eventually(lambda: exact(client, n1, 0))
    assert 7 in n1.agent.lingering

    await client.create(subnet("ns2", "s7", 7, "10.7.0.0/24"))
    await client.create(na("ns2", "r2", "n2", "s7"))
    await eventually(lambda: implemented(client, "ns2", "r2"))
    await client.create(na("ns2", "b", "n1", "s7"))
    await eventually(lambda: exact(client, n1, 1))
    vn = n1.agent.vns[7]
    assert vn.namespace == "ns2" and vn.informer is not old and old._task is None
    assert (n1.count("starts"), n1.count("stops"), n1.count("reuses")) == (2, 1, 0)
