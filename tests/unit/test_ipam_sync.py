"""IPAM decisions that the real apiserver cannot easily provoke, with the fake API."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from kos.api.errors import Invalid
from kos.api.meta import ObjectMeta
from kos.api.types import IPLock, NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec, SubnetStatus
from kos.client.informer import Informer
from kos.client.workqueue import WorkQueue
from kos.controllers.ipam import IPAM
from kos.controllers.metrics import IPAMMetrics
from kos.testing.fakeapi import FakeAPI


async def test_permanent_lock_create_error_is_reported_and_no_address_is_written() -> None:
    fake = FakeAPI()
    fake.fail("create", Invalid('IPLock.network.example.com "x" is invalid: spec.subnetName: Invalid value'),
              kind="IPLock")  # fmt: skip
    subnets: Informer[Subnet] = Informer(fake, Subnet)
    nas: Informer[NetworkAttachment] = Informer(fake, NetworkAttachment)
    locks: Informer[IPLock] = Informer(fake, IPLock)
    ipam = IPAM(fake, subnets, nas, locks, WorkQueue("ipam"), IPAMMetrics(CollectorRegistry()))
    subnets.indexer.put(Subnet(metadata=ObjectMeta(name="s1", namespace="ns", uid="s-uid", resource_version="1"),
                               spec=SubnetSpec(vni=5, ipv4="10.0.0.0/24"), status=SubnetStatus(validated=True)))  # fmt: skip
    a = fake.put(NetworkAttachment(metadata=ObjectMeta(name="a", namespace="ns", uid="a-uid"),
                                   spec=NetworkAttachmentSpec(node="n", subnet="s1")))  # fmt: skip
    nas.indexer.put(a)
    await ipam.sync("ns/a")
    assert fake.count("create", "IPLock") == 1 and fake.count("update_status") == 1
    written = fake.stored(NetworkAttachment, "ns", "a")
    assert written is not None
    assert written.status.ipv4 == "" and written.status.lock_uid == "" and written.status.address_vni == 0
    assert written.status.errors.ipam[0].startswith("Failed to create IPLock v1-5-10-0-0-")
    assert ipam.addresses.count(5) == 0  # the address picked for the failed lock is free again
