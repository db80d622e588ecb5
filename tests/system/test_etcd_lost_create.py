"""A create or update whose reply was lost, and which another client wrote over before the retry, is still ours.

The chaos run found it (`kos chaos`, quorum loss): the first attempt of a create was applied but its answer
never came; by the time the store's retry found the key, the controller manager had already written the new
object's status, so the key no longer held the bytes the create wrote, and the create was answered 409
AlreadyExists — a failed write that had been applied. The store now recognises its own create at the key's
create revision, and its own update as the key's first change after the revision it expected; a write that
another client's beat is still refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aetcd import rpc
from test_etcd_cluster import needs_etcd, single  # type: ignore[import-not-found]

from kos.storage.etcd import EtcdStore
from kos.storage.interface import KeyExists, RevisionMismatch
from kos.testing.etcd import EtcdProcess

__all__ = ["single"]
LOST = rpc.AioRpcError(rpc.StatusCode.UNAVAILABLE, None, None, details="Stream removed (Socket closed)")


class _Interrupted:
    """A KV stub whose next Txn runs `first(real, req, kw)` and then loses its reply; later ones go through."""

    def __init__(self, real: Any, first: Callable[[Any, Any, dict[str, Any]], Awaitable[None]]) -> None:
        self.real = real
        self.first: Callable[[Any, Any, dict[str, Any]], Awaitable[None]] | None = first

    async def Txn(self, req: Any, **kw: Any) -> Any:
        if self.first is not None:
            first, self.first = self.first, None
            await first(self.real, req, kw)
            raise LOST
        return await self.real.Txn(req, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def applied_then_overwritten(key: bytes) -> Callable[[Any, Any, dict[str, Any]], Awaitable[None]]:
    async def first(real: Any, req: Any, kw: dict[str, Any]) -> None:
        await real.Txn(req, **kw)
        await real.Put(rpc.PutRequest(key=key, value=b"overwritten"), **kw)

    return first


def beaten(key: bytes) -> Callable[[Any, Any, dict[str, Any]], Awaitable[None]]:
    async def first(real: Any, req: Any, kw: dict[str, Any]) -> None:
        await real.Put(rpc.PutRequest(key=key, value=b"theirs"), **kw)  # ours is never sent

    return first


@needs_etcd
@pytest.mark.etcd
@pytest.mark.system
async def test_a_create_applied_then_updated_by_another_client_is_reported_created(single: EtcdProcess) -> None:
    store = await EtcdStore.open(single.endpoints, prefix="/lostc")
    ep = store._eps[0]
    real = ep.kv
    try:
        ep.kv = _Interrupted(real, applied_then_overwritten(b"/lostc/t/ns/a"))
        rev = await store.create("/t/ns/a", b"created")
        kv = await store.get("/t/ns/a")
        assert kv is not None and kv.create_revision == rev and kv.value == b"overwritten"
        with pytest.raises(KeyExists):  # another client's create of a key that exists is still refused
            await store.create("/t/ns/a", b"created")
        ep.kv = _Interrupted(real, beaten(b"/lostc/t/ns/b"))  # theirs created b; ours never was
        with pytest.raises(KeyExists):
            await store.create("/t/ns/b", b"ours")
    finally:
        ep.kv = real
        await store.close()


@needs_etcd
@pytest.mark.etcd
@pytest.mark.system
async def test_an_update_applied_then_overwritten_is_reported_applied_and_a_beaten_one_is_not(
    single: EtcdProcess,
) -> None:
    store = await EtcdStore.open(single.endpoints, prefix="/lostu")
    ep = store._eps[0]
    real = ep.kv
    try:
        r1 = await store.create("/t/ns/a", b"v1")
        ep.kv = _Interrupted(real, applied_then_overwritten(b"/lostu/t/ns/a"))
        r2 = await store.update("/t/ns/a", b"v2", r1)  # ours was the first change after r1
        kv = await store.get("/t/ns/a")
        assert kv is not None and kv.value == b"overwritten" and r1 < r2 < kv.mod_revision
        ep.kv = _Interrupted(real, beaten(b"/lostu/t/ns/a"))  # another client's change came first
        with pytest.raises(RevisionMismatch):
            await store.update("/t/ns/a", b"v3", kv.mod_revision)
    finally:
        ep.kv = real
        await store.close()
