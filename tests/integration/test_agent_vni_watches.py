"""A VNI's watch on a node: started when the VNI becomes relevant there, stopped when it stops, counted.

A real apiserver and controller manager (IPAM) in-process, and two connection
agents with the sim fabric: n1, under test, and n2, whose NAs are n1's remotes.
When n1's last NA of a VNI goes, its remote interfaces leave n1's fabric and the
VNI's watch stops; the next local NA of the VNI starts a new watch, which lists
the VNI's remote NAs again (ARCHITECTURE §8, invariant 3: the fabric is checked
exact against the API at every step). The counters
`kos_agent_vni_watch_{starts,stops,initial_objects}_total` count those watches
and what they listed: in the large-network benchmark they showed how often the
driver's churn makes VNIs toggle (docs/performance.md).
"""

from __future__ import annotations

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
from kos.testing.wait import eventually

HOSTS = {"n1": "192.0.2.1", "n2": "192.0.2.2"}


@pytest.fixture
async def cm(server: APIServer) -> AsyncIterator[ControllerManager]:
    c = ControllerManager(Settings(server=server.url, metrics_port=0, seed=1))
    await c.start()
    yield c
    await c.stop()


class Node:
    def __init__(self, server: APIServer, network: SimNetwork, name: str) -> None:
        self.registry = CollectorRegistry()
        self.fabric = SimFabric(network, name, HOSTS[name])
        self.client = Client(server.url, watch_mux=True)
        self.agent = ConnectionAgent(self.client, self.fabric, AgentSettings(name, HOSTS[name]),
                                     AgentMetricFamilies(self.registry))  # fmt: skip

    def count(self, what: str) -> float:
        return self.registry.get_sample_value(f"kos_agent_vni_watch_{what}_total", {"node": self.agent.node}) or 0.0

    def counts(self) -> tuple[float, float, float]:
        return self.count("starts"), self.count("stops"), self.count("initial_objects")


@pytest.fixture
async def nodes(server: APIServer, cm: ControllerManager) -> AsyncIterator[tuple[Node, Node]]:
    network = SimNetwork()
    n1, n2 = Node(server, network, "n1"), Node(server, network, "n2")
    await n1.agent.start()
    await n2.agent.start()
    yield n1, n2
    for n in (n1, n2):
        await n.agent.stop()
        await n.client.close()


def subnet(name: str, vni: int, cidr: str) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace="ns1"), spec=SubnetSpec(vni=vni, ipv4=cidr))


def na(name: str, node: str, sub: str) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns1"),
                             spec=NetworkAttachmentSpec(node=node, subnet=sub))  # fmt: skip


async def exact(client: Client, n: Node, count: int) -> bool:
    """Every NA is implemented, and n's fabric holds exactly the `count` remotes invariant 3 says it should."""
    nas, _ = await client.list(NetworkAttachment)
    if not all(a.status.ipv4 and a.status.host_ip for a in nas):
        return False
    node = n.agent.node
    mine = {a.status.address_vni for a in nas if a.spec.node == node}
    want = {(a.status.address_vni, a.status.ipv4, a.status.host_ip) for a in nas
            if a.spec.node != node and a.status.address_vni in mine}  # fmt: skip
    have = {(r.vni, r.guest_ip, r.host_ip) for r in await n.fabric.list_remote_ifcs()}
    return len(want) == count and have == want


async def test_a_vni_watch_starts_and_stops_with_the_vni_s_relevance(client: Client, nodes: tuple[Node, Node]) -> None:
    n1, _ = nodes
    await client.create(subnet("s7", 7, "10.7.0.0/24"))
    await client.create(subnet("s8", 8, "10.8.0.0/24"))
    for name in ("r1", "r2"):
        await client.create(na(name, "n2", "s7"))
    await client.create(na("other-vni", "n2", "s8"))
    await eventually(lambda: exact(client, n1, 0))
    assert n1.counts() == (0, 0, 0) and not n1.agent.vns

    # n1's first NA of VNI 7: one watch, which starts with VNI 7's two remote NAs
    await client.create(na("a", "n1", "s7"))
    await eventually(lambda: exact(client, n1, 2))
    assert n1.counts() == (1, 0, 2) and list(n1.agent.vns) == [7]
    first = n1.agent.vns[7].informer

    # a second local NA of VNI 7 needs no second watch; the remote added meanwhile comes as an event
    await client.create(na("b", "n1", "s7"))
    await client.create(na("r3", "n2", "s7"))
    await eventually(lambda: exact(client, n1, 3))
    assert n1.counts() == (1, 0, 2) and n1.agent.vns[7].informer is first

    # both local NAs go: the remotes leave the fabric, the watch stops
    for name in ("a", "b"):
        await client.delete(NetworkAttachment, "ns1", name)
    await eventually(lambda: exact(client, n1, 0))
    await eventually(lambda: n1.count("stops") == 1)
    assert not n1.agent.vns and first._task is None

    # relevant again: a new watch lists VNI 7 again (three remotes now)
    await client.delete(NetworkAttachment, "ns1", "r1")
    await client.create(na("c", "n1", "s7"))
    await eventually(lambda: exact(client, n1, 2))
    assert n1.counts() == (2, 1, 2 + 2) and n1.agent.vns[7].informer is not first
