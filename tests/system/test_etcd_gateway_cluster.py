"""tests/system/test_etcd_cluster.py again, with the store on etcd's JSON gateway (`transport="gateway"`).

The failover guarantees (leader and follower SIGKILL under writes and a watch, quorum loss as Unavailable
and recovery, a write whose reply was lost resolved by re-issuing it, a dead endpoint skipped, a clear
Unavailable when none answers) belong to EtcdStore, whatever carries its requests: the same tests, unchanged,
with every `EtcdStore.open` of this module defaulting to the gateway transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_etcd_cluster import (  # type: ignore[import-not-found]
    cluster,
    single,
    test_a_dead_endpoint_is_skipped,
    test_no_reachable_endpoint_is_a_clear_unavailable,
    test_quorum_loss_is_unavailable_until_a_member_returns,
    test_write_with_lost_reply_is_resolved,
    test_writes_and_watch_survive_leader_kill,
)

from kos.storage.etcd import EtcdStore
from kos.storage.etcd_gateway import GatewayEndpoint

__all__ = [
    "cluster",
    "single",
    "test_a_dead_endpoint_is_skipped",
    "test_no_reachable_endpoint_is_a_clear_unavailable",
    "test_quorum_loss_is_unavailable_until_a_member_returns",
    "test_write_with_lost_reply_is_resolved",
    "test_writes_and_watch_survive_leader_kill",
]


@pytest.fixture(autouse=True)
def _gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = EtcdStore.open.__func__  # type: ignore[attr-defined]

    async def open_on_gateway(cls: type[EtcdStore], *args: Any, **kwargs: Any) -> EtcdStore:
        kwargs.setdefault("transport", "gateway")
        store: EtcdStore = await real(cls, *args, **kwargs)
        assert all(isinstance(ep, GatewayEndpoint) for ep in store._eps)  # the gateway, not gRPC, is tested
        return store

    monkeypatch.setattr(EtcdStore, "open", classmethod(open_on_gateway))
    yield
