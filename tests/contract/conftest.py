from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kos.storage.interface import Store
from kos.storage.memory import MemoryStore
from kos.storage.sqlite import SQLiteStore

BACKENDS = ["memory", "sqlite", "etcd", "etcd-mtls"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind = request.param
    s: Store
    if kind == "memory":
        s = MemoryStore(history=1000)
    elif kind == "sqlite":
        s = await SQLiteStore.open(str(tmp_path / "state.db"))
    else:
        if shutil.which("etcd") is None:
            pytest.skip("etcd is not installed (make test installs etcd-server when run as root)")
        # etcd-mtls: the same contract over mutual TLS (client certificate, --client-cert-auth)
        etcd = request.getfixturevalue("etcd_tls_server" if kind == "etcd-mtls" else "etcd_server")
        from kos.storage.etcd import EtcdStore

        s = await EtcdStore.open(etcd.endpoints, prefix=f"/test-{request.node.name}", tls=etcd.store_tls())
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from kos.testing.etcd import EtcdProcess

    proc = EtcdProcess.start(tmp_path_factory.mktemp("etcd"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def etcd_tls_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from kos.testing.etcd import EtcdProcess

    proc = EtcdProcess.start(tmp_path_factory.mktemp("etcd-tls"), tls=True)
    try:
        yield proc
    finally:
        proc.stop()
