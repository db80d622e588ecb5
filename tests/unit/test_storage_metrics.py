"""kos_storage_request_duration_seconds: every store call the apiserver makes is timed, by operation and resource."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from kos.apiserver.storagemetrics import MeteredStore, resource_of, storage_latency
from kos.storage.interface import KeyExists, RevisionMismatch
from kos.storage.memory import MemoryStore


def count(registry: CollectorRegistry, operation: str, type_: str) -> float:
    v = registry.get_sample_value("kos_storage_request_duration_seconds_count", {"operation": operation, "type": type_})
    return v or 0.0


@pytest.mark.parametrize(
    ("key", "resource"),
    [("/networkattachments/ns/a", "networkattachments"), ("/iplocks/", "iplocks"), ("/", "*"), ("", "*"),
     ("relative/key", "*")],
)  # fmt: skip
def test_the_resource_is_the_first_segment_of_the_key(key: str, resource: str) -> None:
    assert resource_of(key) == resource


async def test_each_call_is_observed_once_under_its_operation_and_resource() -> None:
    registry = CollectorRegistry()
    store = MeteredStore(MemoryStore(), storage_latency(registry))
    rev = await store.create("/subnets/ns/a", b"{}")
    await store.update("/subnets/ns/a", b"{}", rev)
    assert await store.get("/subnets/ns/a") is not None
    await store.list("/")
    await store.current_revision()
    await store.delete("/subnets/ns/a")
    expected = {("create", "subnets"): 1, ("update", "subnets"): 1, ("get", "subnets"): 1, ("list", "*"): 1,
                ("current_revision", "*"): 1, ("delete", "subnets"): 1}  # fmt: skip
    for (op, res), n in expected.items():
        assert count(registry, op, res) == n, (op, res)
    assert count(registry, "create", "iplocks") == 0


async def test_a_call_that_fails_is_observed_and_its_error_passes_through() -> None:
    registry = CollectorRegistry()
    store = MeteredStore(MemoryStore(), storage_latency(registry))
    rev = await store.create("/iplocks/ns/x", b"{}")
    with pytest.raises(KeyExists):
        await store.create("/iplocks/ns/x", b"{}")
    with pytest.raises(RevisionMismatch):
        await store.update("/iplocks/ns/x", b"{}", rev + 5)
    assert count(registry, "create", "iplocks") == 2
    assert count(registry, "update", "iplocks") == 1
