"""An in-process controller manager with leader election: it runs its controllers only while it leads, and
stops them (and sets `lost`) once it cannot renew its Lease within the renew deadline.

Leadership is taken from it by an admin rewriting the Lease to another holder: every renewal then sees a
Lease held by someone else that has not expired, so renewals fail until the deadline passes. Short timings
(lease 3 s, renew deadline 2 s, retry 0.5 s) keep this to a few seconds of real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import (
    LEADER_ELECTION_NAMESPACE,
    Lease,
    NetworkAttachment,
    NetworkAttachmentSpec,
    Subnet,
    SubnetSpec,
)
from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.controllers.leaderelection import LeaderElectionConfig
from kos.testing.apiserver import running_apiserver
from kos.testing.controllers import start_cm
from kos.testing.wait import eventually

NS = "le"
CONFIG = LeaderElectionConfig(identity="cm-1", lease_duration=3, renew_deadline=2, retry_period=0.5)


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with running_apiserver() as s:
        yield s


async def addressed(client: Client, name: str) -> bool:
    return bool((await client.get(NetworkAttachment, NS, name)).status.ipv4)


async def test_controllers_run_while_leading_and_stop_when_the_lease_cannot_be_renewed(server: APIServer) -> None:
    cm = await start_cm(server, leader_election=CONFIG)
    try:
        async with Client(server.url) as client:
            assert cm.elector is not None
            await eventually(lambda: cm.elector is not None and cm.elector.leading, timeout=10)
            await client.create(Subnet(metadata=ObjectMeta(name="net", namespace=NS),
                                       spec=SubnetSpec(vni=5, ipv4="10.5.0.0/24")))  # fmt: skip
            await client.create(NetworkAttachment(metadata=ObjectMeta(name="a", namespace=NS),
                                                  spec=NetworkAttachmentSpec(node="n", subnet="net")))  # fmt: skip
            await eventually(lambda: addressed(client, "a"), timeout=10)
            assert cm.ipam._tasks  # its workers run

            lease = await client.get(Lease, LEADER_ELECTION_NAMESPACE, "kos-controller-manager")
            stolen = msgspec.structs.replace(lease.spec, holder_identity="intruder", lease_duration_seconds=3600)
            await client.update(msgspec.structs.replace(lease, spec=stolen))
            await eventually(cm.lost.is_set, timeout=10)
            assert not cm.elector.leading and cm.elector.lost
            assert not cm.ipam._tasks and not cm.validator._tasks  # the controllers stopped
            held = await client.get(Lease, LEADER_ELECTION_NAMESPACE, "kos-controller-manager")
            assert held.spec.holder_identity == "intruder"  # a lost lease is not released: it is not ours
    finally:
        await cm.stop()
