"""The agent's reads that need not be consistent ask for "at least what I saw" (no store read on the apiserver).

A VNI's watch starts no older than the local NA that made the VNI relevant, and a status sweep lists no older
than the local watch's revision; both fall back to a consistent read when that revision is from a replaced
store (504 ResourceVersionTooLarge).
"""

from __future__ import annotations

import msgspec
from test_agent_decisions import NODE, NS, agent, fabric, fake, na  # type: ignore[import-not-found]

from kos.agent.connection_agent import ConnectionAgent
from kos.api import errors
from kos.api.types import NetworkAttachment
from kos.testing.fakeapi import FakeAPI
from kos.testing.wait import eventually

__all__ = ["agent", "fabric", "fake"]  # the agent under test and its fake API, as test_agent_decisions makes them


async def addressed(fake: FakeAPI, name: str, ip: str, vni: int) -> NetworkAttachment:
    """A local NA that IPAM addressed (test_agent_decisions' `na` on the agent's node)."""
    obj: NetworkAttachment = await na(fake, name, NODE, ip, vni)
    return obj


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
