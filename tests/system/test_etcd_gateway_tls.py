"""etcd's JSON gateway over mutual TLS needs a member certificate that is also a client certificate.

The gateway on etcd's client port (`POST /v3/watch`, …) dials the member's own client port with the member's
serving certificate as its client certificate, so with `--client-cert-auth` and a server-auth-only certificate
its watch is refused (503), while a serverAuth+clientAuth certificate (`kos certs init --peer`;
`EtcdProcess.start(..., tls=True, peer=True)`) makes it work. bench/etcd_binding.py's `kos-http` column and
docs/dependencies.md ("The etcd binding") rely on this.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kos.testing.etcd import EtcdProcess

pytestmark = [
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not on PATH (make test installs etcd-server)"),
    pytest.mark.etcd,
    pytest.mark.system,
]

_WATCH = b'{"create_request": {"key": "L2dhdGV3YXkv"}}'  # the key /gateway/, base64


def _first_watch_line(etcd: EtcdProcess) -> tuple[int, bytes]:
    """(HTTP status, first line of the answer) of a gateway watch, with the test PKI's client certificate."""
    assert etcd.tls is not None
    url = f"https://127.0.0.1:{etcd.endpoints[0][1]}/v3/watch"
    req = urllib.request.Request(url, data=_WATCH, method="POST", headers={"Grpc-Metadata-hasleader": "true"})
    try:
        with urllib.request.urlopen(req, context=etcd.tls.client_context(), timeout=10) as resp:
            return resp.status, resp.readline()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _usages(cert: Path) -> list[x509.ObjectIdentifier]:
    ext = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    return list(ext.value)


def test_gateway_watch_works_over_mtls_with_a_peer_certificate(tmp_path: Path) -> None:
    with EtcdProcess.start(tmp_path, tls=True, peer=True) as etcd:
        assert etcd.tls is not None
        assert _usages(etcd.tls.server_cert) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        status, line = _first_watch_line(etcd)
    assert status == 200
    assert b'"created":true' in line


def test_gateway_watch_is_refused_with_a_server_only_certificate(tmp_path: Path) -> None:
    with EtcdProcess.start(tmp_path, tls=True) as etcd:
        assert etcd.tls is not None
        assert _usages(etcd.tls.server_cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
        status, _ = _first_watch_line(etcd)
    assert status == 503
