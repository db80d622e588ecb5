"""The agent's status writes, and clearing them when IPAM takes an address away (ARCHITECTURE §12.4).

A real apiserver, a controller manager and one connection agent with the sim
fabric, in-process. The original agent left MAC, interface name and host IP on
an NA whose address IPAM had removed; kos's agent clears them (batched, with a
resourceVersion precondition), and also clears what a previous run left behind.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.controllers.manager import ControllerManager
from kos.fabric.sim import SimFabric, SimNetwork
from kos.testing.wait import eventually

NS = "ns1"
NODE = "n1"
HOST_IP = "192.0.2.1"


async def start_agent(server: APIServer, fabric: SimFabric) -> tuple[ConnectionAgent, Client]:
    client = Client(server.url)
    agent = ConnectionAgent(client, fabric, AgentSettings(NODE, HOST_IP, frozenset(), 2),
                            AgentMetricFamilies(CollectorRegistry()))  # fmt: skip
    await agent.start()
    return agent, client


async def get(client: Client, name: str) -> NetworkAttachment:
    return await client.get(NetworkAttachment, NS, name)


def subnet(name: str = "s1") -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=7, ipv4="10.7.0.0/24"))


def na(name: str) -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace=NS), spec=NetworkAttachmentSpec(node=NODE, subnet="s1")
    )


async def test_fields_are_written_then_cleared_when_the_address_goes(
    server: APIServer, client: Client, cm: ControllerManager
) -> None:
    fabric = SimFabric(SimNetwork(), NODE, HOST_IP)
    agent, agent_client = await start_agent(server, fabric)
    try:
        await client.create(subnet())
        await client.create(na("a"))
        await eventually(lambda: _ready(client, "a"))
        a = await get(client, "a")
        assert a.status.host_ip == HOST_IP and a.status.mac_address and a.status.ifc_name
        assert [i.guest_ip for i in await fabric.list_local_ifcs()] == [a.status.ipv4]

        # the subnet goes: IPAM clears the address, the agent removes the interface and clears its fields
        await client.delete(Subnet, NS, "s1")
        await eventually(lambda: _cleared(client, "a"))
        assert (await get(client, "a")).status.ipv4 == ""
        assert await fabric.list_local_ifcs() == []

        # the subnet returns: the NA is addressed and implemented again
        await client.create(subnet())
        await eventually(lambda: _ready(client, "a"))
        assert len(await fabric.list_local_ifcs()) == 1
    finally:
        await agent.stop()
        await agent_client.close()


async def test_a_restarted_agent_clears_what_its_previous_run_left(server: APIServer, client: Client) -> None:
    # an unaddressed NA on our node that still shows implementation fields (the agent was down when the
    # address went); no controller manager runs, so nothing else touches it
    await client.create(na("b"))
    await client.patch(NetworkAttachment, NS, "b", {"status": {"hostIP": HOST_IP, "ifcName": "old0",
                                                               "macAddress": "aa:bb:cc:dd:ee:ff"}},
                       subresource="status")  # fmt: skip
    fabric = SimFabric(SimNetwork(), NODE, HOST_IP)
    agent, agent_client = await start_agent(server, fabric)
    try:
        await eventually(lambda: _cleared(client, "b"))
    finally:
        await agent.stop()
        await agent_client.close()


async def _ready(client: Client, name: str) -> bool:
    st = (await get(client, name)).status
    return bool(st.ipv4 and st.ifc_name and st.host_ip)


async def _cleared(client: Client, name: str) -> bool:
    st = (await get(client, name)).status
    return not (st.host_ip or st.ifc_name or st.mac_address)
