"""IPAM's decisions against the in-memory fake API (no HTTP): allocation, release, retries, full pools, locks.

Each test builds IPAM on informers of a `FakeAPI`, waits for their caches with
the fake's `settled` barrier (every watch event handled) and calls `sync` for
one NA directly, so what IPAM did in that sync is exactly the calls the fake
recorded.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from kos.api import cidr, names
from kos.api.errors import Conflict, ServiceUnavailable, conflict, precondition_failed
from kos.api.meta import ObjectMeta, OwnerReference
from kos.api.types import (
    API_VERSION,
    IPLock,
    IPLockSpec,
    NetworkAttachment,
    NetworkAttachmentSpec,
    Subnet,
    SubnetSpec,
    SubnetStatus,
)
from kos.client.controller import Retry
from kos.client.informer import Informer
from kos.client.workqueue import WorkQueue
from kos.controllers.ipam import IPAM, RUN_OUT
from kos.controllers.iplocks import LockClient, best_lock
from kos.controllers.metrics import IPAMMetrics
from kos.testing.fakeapi import FakeAPI

NS = "ns"


@pytest.fixture
async def fake() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
async def ipam(fake: FakeAPI) -> AsyncIterator[IPAM]:
    informers = (Informer(fake, Subnet), Informer(fake, NetworkAttachment), Informer(fake, IPLock))
    ipam = IPAM(fake, *informers, WorkQueue("ipam"), IPAMMetrics(CollectorRegistry()))
    for inf in informers:
        inf.start()
    for inf in informers:
        await inf.wait_synced(5)
    yield ipam
    for inf in informers:
        await inf.stop()


async def subnet(fake: FakeAPI, cidr_block: str = "10.0.0.0/24", vni: int = 5, name: str = "s1") -> Subnet:
    return await fake.create(Subnet(metadata=ObjectMeta(name=name, namespace=NS),
                                    spec=SubnetSpec(vni=vni, ipv4=cidr_block), status=SubnetStatus(validated=True)))  # fmt: skip


async def attachment(fake: FakeAPI, name: str = "a") -> NetworkAttachment:
    return await fake.create(
        NetworkAttachment(
            metadata=ObjectMeta(name=name, namespace=NS), spec=NetworkAttachmentSpec(node="n1", subnet="s1")
        )
    )


def lock_of(na: NetworkAttachment, ip: str, vni: int = 5, **meta: object) -> IPLock:
    owner = OwnerReference(api_version=API_VERSION, kind="NetworkAttachment", name=na.metadata.name,
                           uid=na.metadata.uid, controller=True)  # fmt: skip
    return IPLock(metadata=ObjectMeta(name=names.lock_name(vni, ip), namespace=NS, owner_references=(owner,), **meta),  # type: ignore[arg-type]
                  spec=IPLockSpec(subnet_name="s1"))  # fmt: skip


def current(fake: FakeAPI, name: str = "a") -> NetworkAttachment:
    na = fake.stored(NetworkAttachment, NS, name)
    assert na is not None
    return na


def locks(fake: FakeAPI) -> list[IPLock]:
    return [o for (cls, _, _), o in fake.objects.items() if cls is IPLock]


async def test_an_address_is_taken_by_creating_its_lock_then_written_once(fake: FakeAPI, ipam: IPAM) -> None:
    await subnet(fake, "10.0.0.0/29")
    await attachment(fake)
    await fake.settled()
    await ipam.sync(f"{NS}/a")
    (lock,) = locks(fake)
    st = current(fake).status
    assert st.lock_uid == lock.metadata.uid and st.address_vni == 5
    assert lock.metadata.name == names.lock_name(5, st.ipv4)
    assert cidr.ip_to_int("10.0.0.2") <= cidr.ip_to_int(st.ipv4) <= cidr.ip_to_int("10.0.0.6")  # assignable only
    assert lock.metadata.owner_references[0].uid == current(fake).metadata.uid
    assert fake.count("create", "IPLock") == 1 and fake.count("update_status") == 1
    await fake.settled()  # IPAM's caches now hold its own writes
    await ipam.sync(f"{NS}/a")
    assert fake.count("create", "IPLock") == 1 and fake.count("update_status") == 1  # nothing more to do


async def test_losing_the_subnet_clears_the_address_then_releases_the_lock(fake: FakeAPI, ipam: IPAM) -> None:
    await subnet(fake)
    await attachment(fake)
    await fake.settled()
    await ipam.sync(f"{NS}/a")
    assert len(locks(fake)) == 1
    await fake.delete(Subnet, NS, "s1")
    await fake.settled()
    await ipam.sync(f"{NS}/a")
    st = current(fake).status
    assert (st.ipv4, st.lock_uid, st.errors.ipam) == ("", "", ("Subnet s1 does not exist",))
    assert locks(fake) == []
    # the status was cleared before the lock was deleted
    verbs = [(c.verb, c.kind) for c in fake.calls if c.verb in ("update_status", "delete")]
    assert verbs[-2:] == [("update_status", "NetworkAttachment"), ("delete", "IPLock")]
    await fake.settled()
    assert ipam.addresses.count(5) == 0


async def test_a_conflicting_status_write_is_retried_with_the_same_lock(fake: FakeAPI, ipam: IPAM) -> None:
    await subnet(fake)
    await attachment(fake)
    await fake.settled()
    fake.fail("update_status", lambda: conflict("networkattachments", "a", "the object has been modified"))
    with pytest.raises(Retry):
        await ipam.sync(f"{NS}/a")
    (lock,) = locks(fake)
    assert current(fake).status.ipv4 == ""
    await fake.settled()
    await ipam.sync(f"{NS}/a")  # the retry finds its own lock and writes it: no second address is taken
    assert locks(fake) == [lock]
    assert current(fake).status.lock_uid == lock.metadata.uid
    assert fake.count("create", "IPLock") == 1


async def test_a_transient_lock_create_failure_frees_the_address_for_the_retry(fake: FakeAPI, ipam: IPAM) -> None:
    await subnet(fake, "10.0.0.0/31")
    await attachment(fake)
    await fake.settled()
    fake.fail("create", ServiceUnavailable("away"), kind="IPLock")
    with pytest.raises(Retry):
        await ipam.sync(f"{NS}/a")
    assert ipam.addresses.count(5) == 0 and locks(fake) == []
    await ipam.sync(f"{NS}/a")
    assert current(fake).status.ipv4 in ("10.0.0.0", "10.0.0.1")


async def test_a_full_subnet_waits_and_is_retried_when_an_address_is_freed(fake: FakeAPI, ipam: IPAM) -> None:
    await subnet(fake, "10.0.0.0/31")  # two addresses, both assignable
    for name in ("a", "b", "c"):
        await attachment(fake, name)
    await fake.settled()
    await ipam.sync(f"{NS}/a")
    await ipam.sync(f"{NS}/b")
    await fake.settled()
    while len(ipam.queue):  # drop what the writes above queued: only the release below may queue c
        key = await ipam.queue.get()
        ipam.queue.done(key)
    with pytest.raises(Retry, match="no IP address available"):
        await ipam.sync(f"{NS}/c")
    assert current(fake, "c").status.errors.ipam == (RUN_OUT,)
    assert current(fake, "c").status.address_contention
    assert ipam.pool.waiting == {f"{NS}/s1": {f"{NS}/c"}}
    await fake.settled()
    while len(ipam.queue):
        key = await ipam.queue.get()
        ipam.queue.done(key)
    freed = current(fake, "a").status.ipv4
    await fake.delete(NetworkAttachment, NS, "a")
    await fake.delete(IPLock, NS, names.lock_name(5, freed))  # what the garbage collector does
    await fake.settled()
    queued = set()
    while len(ipam.queue):
        key = await ipam.queue.get()
        queued.add(key)
        ipam.queue.done(key)
    assert f"{NS}/c" in queued and ipam.pool.waiting == {}
    await ipam.sync(f"{NS}/c")
    st = current(fake, "c").status
    assert st.ipv4 == freed and st.errors.ipam == ()


async def test_a_terminating_lock_is_not_usable_and_not_deleted_again(fake: FakeAPI, ipam: IPAM) -> None:
    await subnet(fake)
    a = await attachment(fake)
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    held = fake.put(lock_of(a, "10.0.0.7", uid="old-lock", creation_timestamp=when, deletion_timestamp=when,
                            finalizers=("network.example.com/address-in-use",)))  # fmt: skip
    shown = msgspec.structs.replace(current(fake).status, ipv4="10.0.0.7", lock_uid="old-lock", address_vni=5)
    await fake.update_status(msgspec.structs.replace(current(fake), status=shown))
    await fake.settled()
    await ipam.sync(f"{NS}/a")
    st = current(fake).status
    assert st.ipv4 not in ("", "10.0.0.7") and st.lock_uid != "old-lock"
    assert fake.stored(IPLock, NS, held.metadata.name) == held  # left to the apiserver, which holds it
    assert fake.count("delete", "IPLock") == 0


@pytest.mark.parametrize("older", ["first", "second"])
async def test_of_two_locks_the_oldest_is_kept_and_the_other_released(fake: FakeAPI, ipam: IPAM, older: str) -> None:
    await subnet(fake)
    a = await attachment(fake)
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    t1 = t0 + datetime.timedelta(seconds=1)
    first = fake.put(lock_of(a, "10.0.0.7", uid="u1", creation_timestamp=t0 if older == "first" else t1))
    second = fake.put(lock_of(a, "10.0.0.9", uid="u2", creation_timestamp=t1 if older == "first" else t0))
    kept, released = (first, second) if older == "first" else (second, first)
    await fake.settled()
    await ipam.sync(f"{NS}/a")
    assert current(fake).status.ipv4 == names.parse_lock_name(kept.metadata.name).ip  # type: ignore[union-attr]
    assert locks(fake) == [kept] and released.metadata.name not in {lk.metadata.name for lk in locks(fake)}


def test_equally_old_locks_resolve_to_the_greatest_uid() -> None:
    na = NetworkAttachment(metadata=ObjectMeta(name="a", namespace=NS, uid="na"), spec=NetworkAttachmentSpec())
    t = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    a, b = (
        lock_of(na, "10.0.0.7", uid="aaa", creation_timestamp=t),
        lock_of(na, "10.0.0.9", uid="bbb", creation_timestamp=t),
    )
    assert best_lock([a, b]) is b and best_lock([b, a]) is b


async def test_release_tells_a_failed_precondition_by_its_typed_cause(fake: FakeAPI) -> None:
    lc = LockClient(fake, IPAMMetrics(CollectorRegistry()))
    na = NetworkAttachment(metadata=ObjectMeta(name="a", namespace=NS, uid="na"), spec=NetworkAttachmentSpec())
    ours = lock_of(na, "10.0.0.7", uid="ours")
    fake.put(lock_of(na, "10.0.0.7", uid="someone-elses"))  # the name was taken again since
    await lc.release(f"{NS}/a", ours)  # a failed uid precondition: ours is gone already, nothing to do
    assert fake.stored(IPLock, NS, ours.metadata.name) is not None
    # a Conflict with the same words but without the cause is not taken for one
    fake.fail("delete", Conflict(precondition_failed("iplocks", "x", "UID", "a", "b").message))
    with pytest.raises(Conflict):
        await lc.release(f"{NS}/a", ours)
