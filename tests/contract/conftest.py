from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kos.storage.interface import Store
from kos.storage.memory import MemoryStore
from kos.storage.sqlite import SQLiteStore

BACKENDS = ["memory", "sqlite", "etcd", "etcd-mtls", "etcd-gw", "etcd-gw-mtls"]
"""etcd-gw*: the same etcd store over etcd's JSON gateway (`?transport=gateway`, kos.storage.etcd_gateway),
in clear and over mutual TLS."""
_ETCD_SERVERS = {
    "etcd": "etcd_server",
    "etcd-mtls": "etcd_tls_server",
    "etcd-gw": "etcd_server",
    "etcd-gw-mtls": "etcd_peer_tls_server",
}


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
        etcd = request.getfixturevalue(_ETCD_SERVERS[kind])
        from kos.storage.etcd import EtcdStore

        transport = "gateway" if kind.startswith("etcd-gw") else "grpc"
        s = await EtcdStore.open(
            etcd.endpoints, prefix=f"/test-{request.node.name}", tls=etcd.store_tls(), transport=transport
        )
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


@pytest.fixture(scope="session")
def etcd_peer_tls_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Mutual TLS with a serverAuth+clientAuth member certificate: etcd's JSON gateway dials the member's gRPC
    port with it, which `--client-cert-auth` checks (kos.storage.etcd_gateway)."""
    from kos.testing.etcd import EtcdProcess

    proc = EtcdProcess.start(tmp_path_factory.mktemp("etcd-peer-tls"), tls=True, peer=True)
    try:
        yield proc
    finally:
        proc.stop()
