"""The calls timed with `kos.util.timing.Timed` observe the outcome labels they observed when timed by hand.

Each case drives one call site against the fake API (or a failing fabric) and reads the histogram's
sample count per label set: "ok", "err", and the handled "nf" where a site has one; a refused create
the lock client recovers from still counts its create as "err".
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies, BoundMetrics
from kos.agent.status import StatusWriter
from kos.api.errors import conflict, invalid
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
from kos.client.controller import Retry, RetrySoon
from kos.controllers.address_status import AddressStatusWriter
from kos.controllers.iplocks import LockClient, Refused, lock_for
from kos.controllers.lock_analysis import Analysis, AttachmentData
from kos.controllers.metrics import IPAMMetrics
from kos.fabric.interface import FabricError, LocalNetIfc
from kos.fabric.sim import SimFabric, SimNetwork
from kos.testing.fakeapi import FakeAPI
from kos.testing.wait import eventually
from kos.util.clock import REAL_CLOCK

NS, NODE = "ns", "n1"


def attachment(name: str = "a", ip: str = "10.0.0.5") -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS), spec=NetworkAttachmentSpec(node=NODE,
                             subnet="s1"), status=NetworkAttachmentStatus(ipv4=ip, address_vni=7, lock_uid="l"))  # fmt: skip


def count(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    return registry.get_sample_value(f"{metric}_count", labels) or 0.0


async def test_the_agents_status_write_observes_ok_err_and_nf() -> None:
    fake, registry = FakeAPI(), CollectorRegistry()
    writer = StatusWriter(fake, NODE, "192.0.2.1", BoundMetrics(AgentMetricFamilies(registry), NODE), REAL_CLOCK)
    metric = "kos_agent_attachment_status_latency_seconds"
    na = await fake.create(attachment())
    await writer.write("ns/a", na, None, [])
    assert count(registry, metric, node=NODE, statusErr="ok", err="ok") == 1
    fake.fail("update_status", lambda: conflict("networkattachments", "a", "modified"))
    with pytest.raises(RetrySoon):
        await writer.write("ns/a", na, None, ["boom"])
    assert count(registry, metric, node=NODE, statusErr="err", err="err") == 1
    await writer.write("ns/b", attachment("b"), None, [])  # never stored: 404, ignored
    assert count(registry, metric, node=NODE, statusErr="ok", err="nf") == 1


async def test_a_failed_local_interface_creation_observes_err() -> None:
    class Failing(SimFabric):
        async def create_local_ifc(self, ifc: LocalNetIfc) -> None:
            raise FabricError("no such device")

    fake, registry = FakeAPI(), CollectorRegistry()
    agent = ConnectionAgent(fake, Failing(SimNetwork(), NODE, "192.0.2.1"), AgentSettings(NODE, "192.0.2.1"),
                            AgentMetricFamilies(registry))  # fmt: skip
    await agent.start()
    try:
        await fake.create(attachment())
        await eventually(lambda: fake.stored(NetworkAttachment, NS, "a").status.errors.host == ("no such device",))  # type: ignore[union-attr]
        labels = {"node": NODE, "op": "CreateLocalIfc"}
        assert count(registry, "kos_agent_fabric_latency_seconds", **labels, err="err") >= 1
        assert count(registry, "kos_agent_fabric_latency_seconds", **labels, err="ok") == 0
    finally:
        await agent.stop()


async def test_lock_creates_and_deletes_observe_their_outcomes() -> None:
    fake, registry = FakeAPI(), CollectorRegistry()
    locks = LockClient(fake, IPAMMetrics(registry))
    metric = "kos_ipam_ip_lock_latency_seconds"
    na = await fake.create(attachment())
    lock, created = await locks.create("ns/a", na, lock_for(na, 7, 0x0A000005))
    assert created and count(registry, metric, op="create", err="ok") == 1
    again, created = await locks.create("ns/a", na, lock_for(na, 7, 0x0A000005))  # a lost answer: recovered
    assert not created and again.metadata.uid == lock.metadata.uid
    assert count(registry, metric, op="create", err="err") == 1 and count(registry, metric, op="create", err="ok") == 1
    fake.fail("create", lambda: invalid("IPLock", "x", []))
    with pytest.raises(Refused):
        await locks.create("ns/a", na, lock_for(na, 7, 0x0A000006))
    assert count(registry, metric, op="create", err="err") == 2
    await locks.release("ns/a", lock)
    await locks.release("ns/a", lock)  # already gone (404): still "ok", as before
    assert count(registry, metric, op="delete", err="ok") == 2
    fake.fail("delete", lambda: conflict("iplocks", lock.metadata.name, "the object has been modified"))
    with pytest.raises(Exception, match="modified"):
        await locks.release("ns/a", lock)
    assert count(registry, metric, op="delete", err="err") == 1


async def test_ipams_status_write_observes_nf_for_a_vanished_na() -> None:
    fake, registry = FakeAPI(), CollectorRegistry()
    writer = AddressStatusWriter(fake, IPAMMetrics(registry))
    metric = "kos_ipam_attachment_update_latency_seconds"
    na = await fake.create(attachment(ip=""))
    assert await writer.write("ns/a", na, AttachmentData(), Analysis(), None, "", ["subnet full"])
    assert count(registry, metric, statusErr="err", err="ok") == 1
    with pytest.raises(Retry, match="gone"):
        await writer.write("ns/b", attachment("b", ip=""), AttachmentData(), Analysis(), None, "", ["x"])
    assert count(registry, metric, statusErr="err", err="nf") == 1
