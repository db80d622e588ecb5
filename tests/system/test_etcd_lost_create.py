"""A create whose reply was lost, and which another client updated before the retry, is still ours.

The chaos run found it (`kos chaos`, quorum loss): the first attempt of a create was applied but its answer
never came; by the time the store's retry found the key, the controller manager had already written the new
object's status, so the key no longer held the bytes the create wrote, and the create was answered 409
AlreadyExists — a failed write that had been applied. The store now reads the key's value at its create
revision and recognises its own create there.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aetcd import rpc

from kos.storage.etcd import EtcdStore
from kos.storage.interface import KeyExists
from kos.testing.etcd import EtcdProcess

needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs the etcd binary")


class _AppliedThenUpdated:
    """A KV stub whose next Txn is applied, then another client updates the key, then the reply is lost."""

    def __init__(self, real: Any, key: bytes) -> None:
        self.real = real
        self.key = key
        self.armed = True

    async def Txn(self, req: Any, **kw: Any) -> Any:
        if self.armed:
            self.armed = False
            await self.real.Txn(req, **kw)
            await self.real.Put(rpc.PutRequest(key=self.key, value=b"updated by another client"), **kw)
            raise rpc.AioRpcError(rpc.StatusCode.UNAVAILABLE, details="Stream removed (Socket closed)")
        return await self.real.Txn(req, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def single(tmp_path: Path) -> Iterator[EtcdProcess]:
    c = EtcdProcess.start(tmp_path)
    try:
        yield c
    finally:
        c.stop()


@needs_etcd
@pytest.mark.etcd
@pytest.mark.system
async def test_a_create_applied_then_updated_by_another_client_is_reported_created(single: EtcdProcess) -> None:
    store = await EtcdStore.open(single.endpoints, prefix="/lostc")
    ep = store._eps[0]
    real = ep.kv
    try:
        ep.kv = _AppliedThenUpdated(real, b"/lostc/t/ns/a")
        rev = await store.create("/t/ns/a", b"created")
        kv = await store.get("/t/ns/a")
        assert kv is not None and kv.create_revision == rev and kv.value == b"updated by another client"
        # another client's create of a key that exists is still refused
        with pytest.raises(KeyExists):
            await store.create("/t/ns/a", b"created")
    finally:
        ep.kv = real
        await store.close()
