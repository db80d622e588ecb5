"""kos on an etcd that serves mutual TLS (`--client-cert-auth`), as a production etcd does.

* The store opened from the URL `etcd://…?cacert=…&cert=…&key=…` creates, reads, updates with
  compare-and-swap, deletes and watches (the whole Store contract runs over mTLS too: the
  `etcd-mtls` backend of tests/contract).
* etcd refuses a client without a certificate, a client whose certificate another CA signed, and a
  client in clear; kos refuses an etcd whose certificate does not chain to `cacert`. Each ends in a
  prompt `Unavailable` that says the TLS handshake failed and names the files to check.
* The apiserver serves from an mTLS etcd: in-process (`running_apiserver`) and as `kos apiserver
  --storage 'etcd://…?cacert=…'`; a 3-member mTLS cluster fails over like a clear one.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kos.api import codec
from kos.api.meta import ObjectMeta
from kos.api.types import Subnet, SubnetSpec
from kos.client.rest import Client
from kos.storage.etcd import EtcdStore
from kos.storage.etcd_tls import EtcdTLS
from kos.storage.interface import EventType, KeyNotFound, RevisionMismatch, Unavailable
from kos.storage.url import open_store
from kos.testing.apiserver import running_apiserver
from kos.testing.etcd import EtcdProcess, TLSFiles
from kos.testing.process import APIServerProcess

pytestmark = [
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not on PATH (make test installs etcd-server)"),
    pytest.mark.etcd,
    pytest.mark.system,
]

NS = "tls"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    proc = EtcdProcess.start(tmp_path_factory.mktemp("etcd-tls"), tls=True)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A second, unrelated test PKI."""
    return TLSFiles.mint(tmp_path_factory.mktemp("other-pki"))


def sn(name: str, vni: int) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4=f"10.{vni}.0.0/24"))


async def test_the_url_reaches_etcd_over_mtls(etcd: EtcdProcess) -> None:
    assert "?cacert=" in etcd.url and "&cert=" in etcd.url and "&key=" in etcd.url
    store = await open_store(etcd.url.replace("?", "/url-test?"))
    try:
        rev = await store.create("/a", b"1")
        watch = store.watch("/", rev)
        kv = await store.get("/a")
        assert kv is not None and kv.value == b"1" and kv.mod_revision == rev
        rev2 = await store.update("/a", b"2", rev)
        with pytest.raises(RevisionMismatch):
            await store.update("/a", b"3", rev)
        deleted = await store.delete("/a", rev2)
        with pytest.raises(KeyNotFound):
            await store.delete("/a")
        seen = []
        async with asyncio.timeout(10):
            async for batch in watch:
                seen += [(e.type, e.key, e.value, e.revision) for e in batch]
                if len(seen) >= 2:
                    break
        assert seen == [(EventType.MODIFIED, "/a", b"2", rev2), (EventType.DELETED, "/a", b"2", deleted.revision)]
    finally:
        await store.close()


async def _refused(endpoints: list[tuple[str, int]], tls: EtcdTLS | None) -> str:
    with pytest.raises(Unavailable) as e:
        store = await EtcdStore.open(endpoints, tls=tls, connect_timeout=1.0)
        await store.close()  # (not reached when refused)
    return str(e.value)


async def test_etcd_refuses_a_client_without_a_certificate(etcd: EtcdProcess) -> None:
    assert etcd.tls is not None
    message = await _refused(etcd.endpoints, EtcdTLS(etcd.tls.cacert))
    assert "the TLS handshake failed" in message and f"cacert={etcd.tls.cacert}" in message


async def test_etcd_refuses_a_client_certificate_from_another_ca(etcd: EtcdProcess, other_ca: TLSFiles) -> None:
    assert etcd.tls is not None
    message = await _refused(etcd.endpoints, EtcdTLS(etcd.tls.cacert, other_ca.cert, other_ca.key))
    assert "the TLS handshake failed" in message and f"cert={other_ca.cert}" in message


async def test_etcd_refuses_a_client_in_clear(etcd: EtcdProcess) -> None:
    message = await _refused(etcd.endpoints, None)
    assert message.startswith(f"etcd connect failed: cannot reach etcd at 127.0.0.1:{etcd.endpoints[0][1]}")


async def test_kos_refuses_an_etcd_its_cacert_did_not_sign(etcd: EtcdProcess, other_ca: TLSFiles) -> None:
    assert etcd.tls is not None
    message = await _refused(etcd.endpoints, EtcdTLS(other_ca.cacert, etcd.tls.cert, etcd.tls.key))
    assert "CERTIFICATE_VERIFY_FAILED" in message and "the TLS handshake failed" in message


async def test_the_apiserver_serves_from_an_mtls_etcd(etcd: EtcdProcess) -> None:
    async with running_apiserver(etcd.url.replace("?", "/in-process?")) as server, Client(server.url) as client:
        created = await client.create(sn("a", 7))
        events = client.watch(Subnet, NS, resource_version=created.metadata.resource_version)
        got = await client.get(Subnet, NS, "a")
        assert got.metadata.uid == created.metadata.uid
        updated = await client.update(codec.replace_meta(got, labels={"tls": "yes"}))
        async with asyncio.timeout(10):
            async for ev in events:
                if ev.type == "MODIFIED":
                    assert ev.object.metadata.resource_version == updated.metadata.resource_version
                    break
        items, _ = await client.list(Subnet, NS)
        assert [s.metadata.labels for s in items] == [{"tls": "yes"}]


async def test_kos_apiserver_takes_the_tls_storage_url(etcd: EtcdProcess, tmp_path: Path) -> None:
    server = APIServerProcess(etcd.url.replace("?", "/cli?"), tmp_path / "apiserver.log").wait_ready()
    try:
        async with Client(server.url) as client:
            await client.create(sn("b", 8))
            assert (await client.get(Subnet, NS, "b")).spec.vni == 8
    finally:
        server.stop()
    store = await EtcdStore.open(etcd.endpoints, prefix="/cli", tls=etcd.store_tls())
    try:  # it really wrote through the mTLS etcd, under the URL's prefix
        items, _ = await store.list("/")
        assert [kv.key for kv in items if "subnets" in kv.key] == [f"/subnets/{NS}/b"]
    finally:
        await store.close()


async def test_a_bad_tls_url_stops_kos_apiserver_with_one_clear_line(etcd: EtcdProcess, tmp_path: Path) -> None:
    assert etcd.tls is not None
    url = etcd.url.replace(str(etcd.tls.key), str(tmp_path / "missing.key"))
    server = APIServerProcess(url, tmp_path / "apiserver.log")
    try:
        assert server.proc.wait(timeout=20) == 2
    finally:
        server.stop()
    assert f"key file {tmp_path / 'missing.key'} does not exist" in (tmp_path / "apiserver.log").read_text()


async def test_a_three_member_mtls_cluster_fails_over(tmp_path: Path) -> None:
    cluster = EtcdProcess.cluster(tmp_path, members=3, tls=True)
    try:
        store = await EtcdStore.open(cluster.endpoints, tls=cluster.store_tls(), request_timeout=1.0)
        try:
            await store.create("/before", b"x")
            cluster.kill(store._cluster.cur)
            assert await store.create("/after", b"y") > 0  # on another member, over TLS
            assert {kv.key for kv in (await store.list("/"))[0]} == {"/before", "/after"}
        finally:
            await store.close()
    finally:
        cluster.stop()
