"""The etcd storage URL's TLS query (`?cacert=…&cert=…&key=…`, etcdctl's names): every mistake is a StoreURLError
that names what to fix, raised before any connection is tried (no etcd is needed here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from kos.pki import authority, directory
from kos.storage.etcd_tls import EtcdTLS, EtcdTLSError
from kos.storage.url import StoreURLError, open_store


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca = authority.new_ca("etcd-ca")
    directory.write(tmp_path, "ca", ca)
    directory.write(tmp_path, "client", authority.issue_client(ca, "kos-apiserver"))
    directory.write(tmp_path, "other", authority.issue_client(ca, "someone-else"))
    return tmp_path


def url(pki: Path, **files: str) -> str:
    query = "&".join(f"{k}={v if v.startswith('/') or not v else pki / v}" for k, v in files.items())
    return f"etcd://127.0.0.1:1/kos?{query}"


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({"cacert": "ca.crt", "cert": "client.crt", "key": "client.key", "cafile": "ca.crt"},
         "unknown query key 'cafile'; an etcd URL takes cacert=<CA file>, cert="),
        ({"cacert": "ca.crt", "cert": "client.crt"}, "give both cert and key"),
        ({"cacert": "ca.crt", "key": "client.key"}, "give both cert and key"),
        ({"cert": "client.crt", "key": "client.key"}, "cert and key need cacert=<file> too"),
        ({"cacert": ""}, "cacert names no file"),
        ({"cacert": "nope.crt"}, "cacert file {pki}/nope.crt does not exist"),
        ({"cacert": "ca.crt", "cert": "client.crt", "key": "gone.key"}, "key file {pki}/gone.key does not exist"),
        ({"cacert": "client.key"}, "cacert {pki}/client.key holds no PEM certificate"),
        ({"cacert": "ca.crt", "cert": "client.crt", "key": "other.key"},
         "cert {pki}/client.crt and key {pki}/other.key are not a PEM certificate and its private key"),
    ],
)  # fmt: skip
async def test_a_bad_tls_query_names_what_to_fix(pki: Path, files: dict[str, str], says: str) -> None:
    with pytest.raises(StoreURLError) as e:
        await open_store(url(pki, **files))
    assert says.format(pki=pki) in str(e.value)
    assert str(e.value).startswith("storage URL 'etcd://127.0.0.1:1/kos?")


async def test_a_repeated_key_is_refused(pki: Path) -> None:
    with pytest.raises(StoreURLError, match="cacert is given twice"):
        await open_store(f"etcd://127.0.0.1:1?cacert={pki}/ca.crt&cacert={pki}/ca.crt")


async def test_an_encrypted_key_is_refused_without_asking_for_a_password(pki: Path) -> None:
    key = directory.load(pki, "client").key
    (pki / "locked.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(StoreURLError, match=r"locked.key is encrypted; give an unencrypted PEM key"):
        await open_store(url(pki, cacert="ca.crt", cert="client.crt", key="locked.key"))


def test_good_files_load_into_channel_credentials(pki: Path) -> None:
    import grpc

    assert isinstance(EtcdTLS(pki / "ca.crt", pki / "client.crt", pki / "client.key").load(), grpc.ChannelCredentials)
    assert isinstance(EtcdTLS(pki / "ca.crt").load(), grpc.ChannelCredentials)  # server-only TLS
    with pytest.raises(EtcdTLSError):
        EtcdTLS(pki / "ca.crt", cert=pki / "client.crt")


async def test_a_prefix_and_endpoints_still_parse_before_the_query(pki: Path) -> None:
    # a bad endpoint is reported as such even with a query; the query is not part of the prefix
    with pytest.raises(StoreURLError, match="endpoint 'h' must be host:port"):
        await open_store(f"etcd://h/kos?cacert={pki}/ca.crt")
    with pytest.raises(StoreURLError, match="endpoint 'h:x' must be host:port"):
        await open_store(f"etcd://h:x?cacert={pki}/ca.crt")
