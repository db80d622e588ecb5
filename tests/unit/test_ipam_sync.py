"""IPAM decisions that the real apiserver cannot easily provoke, with a stub client."""

from __future__ import annotations

from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from kos.api.errors import Invalid
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec, SubnetStatus
from kos.client.informer import Informer
from kos.client.workqueue import WorkQueue
from kos.controllers.ipam import IPAM
from kos.controllers.metrics import IPAMMetrics


class StubClient:
    def __init__(self) -> None:
        self.status_writes: list[NetworkAttachment] = []
        self.creates: list[Any] = []

    async def create(self, obj: Any) -> Any:
        self.creates.append(obj)
        raise Invalid('IPLock.network.example.com "x" is invalid: spec.subnetName: Invalid value')

    async def update_status(self, obj: NetworkAttachment) -> NetworkAttachment:
        self.status_writes.append(obj)
        return msgspec.structs.replace(obj, metadata=msgspec.structs.replace(obj.metadata, resource_version="99"))


async def test_permanent_lock_create_error_is_reported_and_no_address_is_written() -> None:
    stub = StubClient()
    subnets: Informer[Subnet] = Informer(stub, Subnet)  # type: ignore[arg-type]
    nas: Informer[NetworkAttachment] = Informer(stub, NetworkAttachment)  # type: ignore[arg-type]
    locks: Informer[Any] = Informer(stub, Subnet)  # type: ignore[arg-type]
    ipam = IPAM(stub, subnets, nas, locks, WorkQueue("ipam"), IPAMMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    subnets.indexer.put(Subnet(metadata=ObjectMeta(name="s1", namespace="ns", uid="s-uid", resource_version="1"),
                               spec=SubnetSpec(vni=5, ipv4="10.0.0.0/24"), status=SubnetStatus(validated=True)))  # fmt: skip
    nas.indexer.put(NetworkAttachment(metadata=ObjectMeta(name="a", namespace="ns", uid="a-uid", resource_version="2"),
                                      spec=NetworkAttachmentSpec(node="n", subnet="s1")))  # fmt: skip
    await ipam.sync("ns/a")
    assert len(stub.creates) == 1
    (written,) = stub.status_writes
    assert written.status.ipv4 == "" and written.status.lock_uid == "" and written.status.address_vni == 0
    assert written.status.errors.ipam[0].startswith("Failed to create IPLock v1-5-10-0-0-")
    assert ipam.addresses.count(5) == 0  # the address picked for the failed lock is free again
