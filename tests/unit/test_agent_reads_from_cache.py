"""The agent's reads that need not be consistent ask for "at least what I saw" (no store read on the apiserver).

A VNI's watch starts no older than the local NA that made the VNI relevant, and a status sweep lists no older
than the local watch's revision; both fall back to a consistent read when that revision is from a replaced
store (504 ResourceVersionTooLarge).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.api import errors
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
from kos.fabric.sim import SimFabric, SimNetwork
from kos.testing.fakeapi import FakeAPI
from kos.testing.wait import eventually

NS = "ns"
NODE, HOST_IP = "n1", "192.0.2.1"


@pytest.fixture
async def fake() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
async def agent(fake: FakeAPI) -> AsyncIterator[ConnectionAgent]:
    fabric = SimFabric(SimNetwork(), NODE, HOST_IP)
    agent = ConnectionAgent(fake, fabric, AgentSettings(NODE, HOST_IP), AgentMetricFamilies(CollectorRegistry()))
    await agent.start()
    yield agent
    await agent.stop()


async def addressed(fake: FakeAPI, name: str, ip: str, vni: int) -> NetworkAttachment:
    st = NetworkAttachmentStatus(ipv4=ip, address_vni=vni, lock_uid="l")
    return await fake.create(NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS),
                                               spec=NetworkAttachmentSpec(node=NODE, subnet="s1"), status=st))  # fmt: skip


def watch_rvs(fake: FakeAPI) -> list[str]:
    return [c.resource_version for c in fake.calls if c.verb == "watch" and c.kind == "NetworkAttachment"]


async def test_a_vni_watch_starts_no_older_than_the_local_watch(fake: FakeAPI, agent: ConnectionAgent) -> None:
    before = watch_rvs(fake)
    assert before == [""]  # the local watch: a consistent streaming list at start
    na = await addressed(fake, "a", "10.0.0.5", vni=7)
    await eventually(lambda: 7 in agent.vns and agent.vns[7].informer.has_synced())
    local, vni = watch_rvs(fake)
    assert local == ""  # the local watch: a consistent streaming list at start
    assert int(na.metadata.resource_version) <= int(vni) <= int(agent.local.reflector.resource_version)


async def test_a_sweep_lists_no_older_than_the_local_watch(fake: FakeAPI, agent: ConnectionAgent) -> None:
    await addressed(fake, "a", "10.0.0.5", vni=7)

    def implemented() -> NetworkAttachment | None:
        o = fake.stored(NetworkAttachment, NS, "a")
        return o if o is not None and o.status.ifc_name else None

    await eventually(lambda: implemented() is not None)  # the agent wrote its status fields
    na = implemented()
    assert na is not None
    unaddressed = msgspec.structs.replace(na.status, ipv4="", address_vni=0, lock_uid="")
    gone = await fake.update_status(msgspec.structs.replace(na, status=unaddressed))
    await eventually(lambda: agent.local.lister.get(NS, "a") is None)  # the departure was seen
    await agent.status.sweep()
    lists = [c.resource_version for c in fake.calls if c.verb == "list"]
    assert lists[-1] == gone.metadata.resource_version


async def test_a_sweep_whose_revision_is_too_large_reads_consistently(fake: FakeAPI, agent: ConnectionAgent) -> None:
    await addressed(fake, "a", "10.0.0.5", vni=7)
    await eventually(lambda: agent.local.lister.get(NS, "a") is not None)
    agent.status.seen_revision = lambda: "999999"  # from a store since replaced
    fake.fail("list", lambda: errors.too_large_resource_version(999999, fake.revision), kind="NetworkAttachment")
    await agent.status.sweep()
    lists = [c.resource_version for c in fake.calls if c.verb == "list"]
    assert lists[-2:] == ["999999", ""]
