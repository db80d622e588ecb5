"""The fake API keeps the apiserver semantics that controller and agent unit tests rely on."""

from __future__ import annotations

import msgspec
import pytest

from kos.api import codec
from kos.api.errors import AlreadyExists, Conflict, Invalid, NotFound, ServiceUnavailable, is_precondition_failed
from kos.api.meta import ObjectMeta
from kos.api.types import IPLock, IPLockSpec, NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
from kos.testing.fakeapi import FakeAPI

NS = "ns"


def na(name: str = "a", node: str = "n1") -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS), spec=NetworkAttachmentSpec(node=node))


async def test_create_get_and_their_errors() -> None:
    fake = FakeAPI()
    a = await fake.create(na())
    assert a.metadata.uid and a.metadata.resource_version == "1" and a.metadata.creation_timestamp is not None
    assert await fake.get(NetworkAttachment, NS, "a") == a
    with pytest.raises(AlreadyExists):
        await fake.create(na())
    with pytest.raises(NotFound):
        await fake.get(NetworkAttachment, NS, "b")
    g = await fake.create(NetworkAttachment(metadata=ObjectMeta(generate_name="x-", namespace=NS),
                                            spec=NetworkAttachmentSpec()))  # fmt: skip
    assert g.metadata.name.startswith("x-") and len(g.metadata.name) == 7


async def test_updates_are_optimistic_and_write_only_their_half() -> None:
    fake = FakeAPI()
    a = await fake.create(na())
    b = await fake.update_status(msgspec.structs.replace(a, status=NetworkAttachmentStatus(ipv4="10.0.0.1")))
    assert b.status.ipv4 == "10.0.0.1" and int(b.metadata.resource_version) > int(a.metadata.resource_version)
    with pytest.raises(Conflict) as stale:
        await fake.update_status(a)  # a stale resourceVersion
    assert not is_precondition_failed(stale.value)
    c = await fake.update(msgspec.structs.replace(b, spec=NetworkAttachmentSpec(node="n2"), status=a.status))
    assert c.spec.node == "n2" and c.status.ipv4 == "10.0.0.1"  # update does not write the status
    with pytest.raises(Invalid):
        await fake.update(codec.replace_meta(c, resource_version=""))  # a PUT must name the version it replaces


async def test_delete_preconditions_carry_the_typed_cause() -> None:
    fake = FakeAPI()
    lock = await fake.create(IPLock(metadata=ObjectMeta(name="l", namespace=NS), spec=IPLockSpec()))
    with pytest.raises(Conflict) as e:
        await fake.delete(IPLock, NS, "l", uid="other")
    assert is_precondition_failed(e.value) and "Precondition failed: UID in precondition: other" in e.value.message
    await fake.delete(IPLock, NS, "l", uid=lock.metadata.uid)
    with pytest.raises(NotFound):
        await fake.delete(IPLock, NS, "l")


async def test_injected_errors_come_before_the_call_does_anything() -> None:
    fake = FakeAPI()
    fake.fail("create", ServiceUnavailable("away"), kind="IPLock", times=2)
    for _ in range(2):
        with pytest.raises(ServiceUnavailable):
            await fake.create(IPLock(metadata=ObjectMeta(name="l", namespace=NS), spec=IPLockSpec()))
    assert fake.objects == {}
    await fake.create(IPLock(metadata=ObjectMeta(name="l", namespace=NS), spec=IPLockSpec()))
    assert fake.count("create", "IPLock") == 3


async def test_a_watch_sees_objects_enter_and_leave_its_selector() -> None:
    fake = FakeAPI()
    await fake.create(na("a"))
    events = fake.watch(NetworkAttachment, NS, field_selector="spec.node=n1", send_initial_events=True)
    first = await anext(events)
    assert (first.type, first.object.metadata.name) == ("ADDED", "a")
    assert (await anext(events)).initial_events_end
    b = await fake.create(na("b", node="n2"))  # not selected: no event
    await fake.update(msgspec.structs.replace(b, spec=NetworkAttachmentSpec(node="n1")))
    ev = await anext(events)
    assert (ev.type, ev.object.metadata.name) == ("ADDED", "b")  # it entered the selection
    a = await fake.get(NetworkAttachment, NS, "a")
    await fake.update(msgspec.structs.replace(a, spec=NetworkAttachmentSpec(node="n3")))
    ev = await anext(events)
    assert (ev.type, ev.object.metadata.name) == ("DELETED", "a")  # it left the selection
    await events.aclose()
