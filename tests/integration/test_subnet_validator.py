"""The subnet validator against a real apiserver (reference §3.6 acceptance cases)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from kos.api.meta import ObjectMeta
from kos.api.types import Subnet, SubnetSpec
from kos.apiserver.server import APIServer
from kos.client.controller import Retry
from kos.client.informer import Informer
from kos.client.rest import Client
from kos.client.workqueue import WorkQueue
from kos.controllers.manager import ControllerManager, Settings
from kos.controllers.metrics import SubnetValidatorMetrics
from kos.controllers.subnet_validator import SubnetValidator
from kos.testing.apiserver import running_apiserver
from kos.testing.wait import eventually


def sn(name: str, vni: int, block: str, ns: str = "ns1") -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=ns), spec=SubnetSpec(vni=vni, ipv4=block))


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with running_apiserver(check_subnet_conflicts=False) as s:  # the validator is the authority here
        yield s


@pytest.fixture
async def validator(server: APIServer) -> AsyncIterator[ControllerManager]:
    cm = ControllerManager(Settings(server=server.url, controllers=("subnet-validator",), metrics_port=0))
    await cm.start()
    yield cm
    await cm.stop()


async def status(client: Client, name: str, ns: str = "ns1") -> tuple[bool, tuple[str, ...]]:
    s = await client.get(Subnet, ns, name)
    return s.status.validated, s.status.errors


async def test_single_subnets_become_valid(client: Client, validator: ControllerManager) -> None:
    await client.create(sn("s1", 1, "192.168.10.0/24"))
    await client.create(sn("s2", 2, "192.168.10.0/24"))  # another VNI: no conflict
    await client.create(sn("s3", 1, "192.168.11.0/24"))  # same VNI, disjoint, same namespace
    for name in ("s1", "s2", "s3"):
        await eventually(lambda n=name: _validated(client, n))
    assert await status(client, "s1") == (True, ())


async def _validated(client: Client, name: str, ns: str = "ns1") -> bool:
    return (await status(client, name, ns))[0]


async def test_conflicting_subnets_reference_each_other_and_recover_when_a_rival_goes(
    client: Client, validator: ControllerManager
) -> None:
    await client.create(sn("s1", 5, "192.168.10.0/24"))
    await client.create(sn("s2", 5, "192.168.10.0/24"))
    await client.create(sn("s3", 5, "192.168.20.0/24", ns="ns2"))

    async def settled() -> bool:
        sts = [await status(client, n) for n in ("s1", "s2")] + [await status(client, "s3", "ns2")]
        return all(e for _, e in sts) or any(v for v, _ in sts)

    await eventually(settled)
    v1, e1 = await status(client, "s1")
    v2, e2 = await status(client, "s2")
    v3, _ = await status(client, "s3", "ns2")
    # whoever was examined first may have been validated; the others must name their rivals
    validated = [n for n, v in (("s1", v1), ("s2", v2), ("s3", v3)) if v]
    assert len(validated) <= 1
    if not v1:
        assert (
            "CIDR overlaps with ns1/s2's (192.168.10.0/24)" in e1 or "same VNI but different namespace wrt ns2/s3" in e1
        )
        assert list(e1) == sorted(e1)
    if not v2:
        assert (
            "CIDR overlaps with ns1/s1's (192.168.10.0/24)" in e2 or "same VNI but different namespace wrt ns2/s3" in e2
        )
    # deleting every rival of a subnet makes it valid
    await client.delete(Subnet, "ns1", "s2")
    await client.delete(Subnet, "ns2", "s3")
    await eventually(lambda: _validated(client, "s1"))
    assert await status(client, "s1") == (True, ())


async def test_status_update_failures_are_retried(server: APIServer, client: Client) -> None:
    """A conflict on the status write (someone else wrote meanwhile) is retried until it lands."""
    await client.create(sn("s1", 1, "10.0.0.0/24"))
    reg = CollectorRegistry()
    subnets: Informer[Subnet] = Informer(client, Subnet)
    q: WorkQueue[str] = WorkQueue("sv")
    v = SubnetValidator(client, subnets, q, SubnetValidatorMetrics(reg))
    subnets.start()
    await subnets.wait_synced(5)
    cached = subnets.lister.get("ns1", "s1")
    assert cached is not None
    await client.patch(Subnet, "ns1", "s1", {"metadata": {"labels": {"bump": "1"}}})  # cache now stale
    with pytest.raises(Retry):
        await v.sync("ns1/s1")
    await eventually(lambda: (subnets.lister.get("ns1", "s1") or cached).metadata.labels)
    await v.sync("ns1/s1")
    assert (await status(client, "s1")) == (True, ())
    await subnets.stop()


async def test_late_informer_does_not_validate(server: APIServer, client: Client) -> None:
    """Only s1 is in the validator's cache but s2 exists: the live list finds s2, s1 must not be validated."""
    s1 = await client.create(sn("s1", 7, "10.0.0.0/24"))
    await client.create(sn("s2", 7, "10.0.0.0/24"))
    subnets: Informer[Subnet] = Informer(client, Subnet)  # never started: we fill its cache by hand
    subnets.indexer.put(s1)
    v = SubnetValidator(client, subnets, WorkQueue("sv"), SubnetValidatorMetrics(CollectorRegistry()))
    with pytest.raises(Retry, match="not in the conflicts cache"):
        await v.sync("ns1/s1")
    assert (await status(client, "s1")) == (False, ())


async def test_recreated_subnet_is_examined_afresh(client: Client, validator: ControllerManager) -> None:
    await client.create(sn("s1", 9, "10.9.0.0/24"))
    await eventually(lambda: _validated(client, "s1"))
    await client.delete(Subnet, "ns1", "s1")
    await client.create(sn("s0", 9, "10.9.0.0/24"))
    await eventually(lambda: _validated(client, "s0"))
    await client.create(sn("s1", 9, "10.9.0.0/25"))  # same name, new incarnation, now conflicting with s0
    await eventually(lambda: _errors(client, "s1"))
    assert await status(client, "s1") == (False, ("CIDR overlaps with ns1/s0's (10.9.0.0/24)",))


async def _errors(client: Client, name: str) -> bool:
    return bool((await status(client, name))[1])
