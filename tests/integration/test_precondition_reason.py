"""A failed delete precondition is told by its typed cause, over the wire as in the fake (no message matching)."""

from __future__ import annotations

import msgspec
import pytest

from kos.api.errors import Conflict, is_precondition_failed
from kos.api.meta import ObjectMeta
from kos.api.types import IPLock, IPLockSpec, NetworkAttachment, NetworkAttachmentSpec
from kos.client.rest import Client

NS = "ns1"


async def test_uid_and_resource_version_preconditions_carry_the_cause(client: Client) -> None:
    lock = await client.create(IPLock(metadata=ObjectMeta(name="v1-5-10-0-0-7", namespace=NS), spec=IPLockSpec()))
    for kwargs in ({"uid": "not-the-uid"}, {"resource_version": "1"}):
        with pytest.raises(Conflict) as e:
            await client.delete(IPLock, NS, lock.metadata.name, **kwargs)  # type: ignore[arg-type]
        assert is_precondition_failed(e.value), kwargs
        assert "Precondition failed" in e.value.message  # Kubernetes' words are kept for people
    await client.delete(IPLock, NS, lock.metadata.name, uid=lock.metadata.uid)


async def test_a_stale_update_is_a_conflict_without_the_cause(client: Client) -> None:
    a = await client.create(NetworkAttachment(metadata=ObjectMeta(name="a", namespace=NS),
                                              spec=NetworkAttachmentSpec(node="n1", subnet="s1")))  # fmt: skip
    labelled = msgspec.structs.replace(a.metadata, labels={"x": "1"})
    await client.update(msgspec.structs.replace(a, metadata=labelled))
    with pytest.raises(Conflict) as e:
        await client.update(msgspec.structs.replace(a, metadata=msgspec.structs.replace(labelled, labels={"x": "2"})))
    assert not is_precondition_failed(e.value)
