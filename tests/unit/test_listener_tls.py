"""The probe listeners of every process but the apiserver (kos.cli.serving): HTTPS by default, verified against
the CA given; a self-signed certificate, with the fingerprint logged, when none is given; plain HTTP only with
--insecure; the flags' mistakes are one line and exit status 2."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry

from kos.cli import serving
from kos.cli.main import main
from kos.cli.settings import SettingError
from kos.http.probes import serve_probes
from kos.http.tls import ReloadingContext
from kos.pki import directory
from kos.pki.authority import issue_server, new_ca, user_of


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca = new_ca("test-ca")
    directory.write(tmp_path, "ca", ca)
    directory.write(tmp_path, "probes", issue_server(ca, "probes", ["localhost"], []))
    directory.write(tmp_path, "other-ca", new_ca("other-ca"))
    return tmp_path


async def _get(port: int, ctx: ssl.SSLContext | None, host: str = "localhost") -> tuple[bytes, bytes | None]:
    """(status line, the server's certificate DER or None) of GET /healthz."""
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None)
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
        obj = writer.get_extra_info("ssl_object")
        return data.split(b"\r\n", 1)[0], obj.getpeercert(binary_form=True) if obj is not None else None
    finally:
        writer.close()


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def test_files_serve_https_verified_against_their_ca_and_refused_by_another(pki: Path) -> None:
    s = serving.ServingTLS(pki / "probes.crt", pki / "probes.key")
    server = await serve_probes("127.0.0.1", 0, CollectorRegistry(), ssl=serving.server_context(s, "127.0.0.1",
                                                                                               component="test"))  # fmt: skip
    try:
        status, _ = await _get(server.port, ssl.create_default_context(cafile=pki / "ca.crt"))
        assert status == b"HTTP/1.1 200 OK"
        with pytest.raises(ssl.SSLCertVerificationError):
            await _get(server.port, ssl.create_default_context(cafile=pki / "other-ca.crt"))
        with pytest.raises(ssl.SSLCertVerificationError):  # the certificate names localhost, not 127.0.0.1
            await _get(server.port, ssl.create_default_context(cafile=pki / "ca.crt"), host="127.0.0.1")
        status, _ = await _get(server.port, None)  # plain HTTP to a TLS listener gets no HTTP answer
        assert not status.startswith(b"HTTP/1.1 200")
    finally:
        await server.stop(1.0)


async def test_the_certificate_files_are_followed_while_the_listener_runs(pki: Path) -> None:
    s = serving.ServingTLS(pki / "probes.crt", pki / "probes.key")
    ctx = serving.server_context(s, "127.0.0.1", component="test")
    assert isinstance(ctx, ReloadingContext)
    server = await serve_probes("127.0.0.1", 0, CollectorRegistry(), ssl=ctx)
    verified = ssl.create_default_context(cafile=pki / "ca.crt")
    try:
        _, der = await _get(server.port, verified)
        assert der is not None and user_of(x509.load_der_x509_certificate(der))[0] == "probes"
        ca = directory.load(pki, "ca")
        directory.write(pki, "probes", issue_server(ca, "probes-rotated", ["localhost"], []), force=True)
        assert ctx.check()  # what the listener's poll does every second
        _, der = await _get(server.port, verified)
        assert der is not None and user_of(x509.load_der_x509_certificate(der))[0] == "probes-rotated"
        assert ctx._timer is not None  # the listener polls ...
    finally:
        await server.stop(1.0)
    assert ctx._timer is None  # ... until it is closed


async def test_no_files_serve_a_self_signed_certificate_whose_fingerprint_is_the_one_logged() -> None:
    identity = serving.self_signed("127.0.0.1", "kos-test")
    server = await serve_probes("127.0.0.1", 0, CollectorRegistry(), ssl=serving.memory_context(identity))
    try:
        status, der = await _get(server.port, _unverified(), host="127.0.0.1")
        assert status == b"HTTP/1.1 200 OK" and der is not None
        assert hashlib.sha256(der).hexdigest() == serving.fingerprint(identity).replace(":", "").lower()
        with pytest.raises(ssl.SSLCertVerificationError):  # no CA a client knows signed it
            await _get(server.port, ssl.create_default_context(), host="127.0.0.1")
    finally:
        await server.stop(1.0)
    assert serving.server_context(serving.ServingTLS(), "0.0.0.0", component="kos-test") is not None
    assert serving.server_context(serving.PLAIN, "0.0.0.0", component="kos-test") is None


def test_the_self_signed_certificate_names_localhost_and_the_listen_host_but_no_wildcard_address() -> None:
    sans = serving.self_signed("10.9.8.7", "c").cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    names = [str(v) for v in sans.value.get_values_for_type(x509.IPAddress)] + sans.value.get_values_for_type(
        x509.DNSName
    )
    assert sorted(names) == ["10.9.8.7", "127.0.0.1", "localhost"]
    sans = serving.self_signed("0.0.0.0", "c").cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(v) for v in sans.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


@pytest.mark.parametrize("command", [
    ["simnodes", "--server", "http://127.0.0.1:9", "--count", "1"],
    ["controller-manager", "--server", "http://127.0.0.1:9"],
    ["agent", "--server", "http://127.0.0.1:9", "--host-ip", "10.0.0.1"],
])  # fmt: skip
def test_the_flags_mistakes_are_one_line_and_exit_2(
    command: list[str], pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crt, key = str(pki / "probes.crt"), str(pki / "probes.key")
    assert main([*command, "--tls-cert-file", crt]) == 2
    assert "--tls-private-key-file / KOS_TLS_PRIVATE_KEY_FILE: give it with --tls-cert-file" in capsys.readouterr().err
    assert main([*command, "--tls-private-key-file", key]) == 2
    assert "--tls-cert-file / KOS_TLS_CERT_FILE: give it with --tls-private-key-file" in capsys.readouterr().err
    assert main([*command, "--tls-cert-file", crt, "--tls-private-key-file", key, "--insecure"]) == 2
    assert "--insecure / KOS_INSECURE: plain HTTP has no use for" in capsys.readouterr().err
    assert main([*command, "--tls-cert-file", str(pki / "missing.crt"), "--tls-private-key-file", key]) == 2
    assert "is not an existing file" in capsys.readouterr().err


def test_a_nodes_ca_file_that_holds_no_certificate_is_a_setting_error(tmp_path: Path, pki: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(SettingError, match="--nodes-ca-file"):
        serving.nodes_client_context(bad)
    assert serving.nodes_client_context(None) is None
    ctx = serving.nodes_client_context(None, (pki / "ca.crt").read_bytes())
    assert ctx is not None and ctx.check_hostname and ctx.minimum_version == ssl.TLSVersion.TLSv1_2
