"""kos.pki: the chain verifies, over a real TLS connection too; SANs, CN and O are as asked; keys are private;
an existing PKI is never replaced unless asked; a minted kubeconfig works with the official Python client and kubectl."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from kos.pki import directory
from kos.pki.authority import issue_client, issue_server, new_ca, user_of
from kos.pki.kubeconfig import kubeconfig

HOSTS = ["kos.kos-system.svc", "localhost", "127.0.0.1", "10.1.2.3", "::1"]


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory.init(tmp_path / "pki", HOSTS)
    return tmp_path / "pki"


def test_the_sans_are_exactly_the_hosts_given(pki: Path) -> None:
    cert = directory.load(pki, directory.APISERVER).cert
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kos.kos-system.svc", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.1.2.3", "::1"]


def test_localhost_is_only_there_when_given(tmp_path: Path) -> None:
    made = directory.init(tmp_path, ["kos.example.com", "192.0.2.7"])
    san = made[directory.APISERVER].cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kos.example.com"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]


def test_the_chain_verifies_with_cryptography(pki: Path) -> None:
    ca = directory.load(pki, directory.CA)
    store = Store([ca.cert])
    server = directory.load(pki, directory.APISERVER).cert
    PolicyBuilder().store(store).build_server_verifier(x509.DNSName("kos.kos-system.svc")).verify(server, [])
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("elsewhere.example")).verify(server, [])
    admin = directory.load(pki, directory.ADMIN).cert
    admin.verify_directly_issued_by(ca.cert)  # (cryptography's client verifier wants a SAN; Kubernetes' do not)
    front_proxy = directory.load(pki, directory.FRONT_PROXY_CA).cert
    with pytest.raises(ValueError):  # the front-proxy CA is a separate root
        admin.verify_directly_issued_by(front_proxy)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_identities_carry_user_and_groups(pki: Path) -> None:
    assert user_of(directory.load(pki, directory.ADMIN).cert) == ("kos:admin", ["system:masters"])
    ca = directory.load(pki, directory.CA)
    node = issue_client(ca, "system:node:node-7", ["system:nodes", "kos:extra"])
    assert user_of(node.cert) == ("system:node:node-7", ["system:nodes", "kos:extra"])
    eku = node.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(ValueError, match="user name"):
        issue_client(ca, "")


def test_keys_are_0600_and_certificates_0644(pki: Path) -> None:
    for name in directory.INIT_NAMES:
        crt, key = directory.paths(pki, name)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert stat.S_IMODE(crt.stat().st_mode) == 0o644, crt


def test_an_existing_pki_is_kept_unless_forced(pki: Path) -> None:
    before = (pki / "ca.crt").read_bytes()
    with pytest.raises(directory.PKIError, match="already holds a PKI"):
        directory.init(pki, ["other.example"])
    assert (pki / "ca.crt").read_bytes() == before
    (pki / "ca.key").chmod(0o644)
    directory.init(pki, ["other.example"], force=True)
    assert (pki / "ca.crt").read_bytes() != before
    assert stat.S_IMODE((pki / "ca.key").stat().st_mode) == 0o600


def test_one_existing_file_is_enough_to_refuse(tmp_path: Path) -> None:
    (tmp_path / "admin.key").write_text("mine")
    with pytest.raises(directory.PKIError):
        directory.init(tmp_path, ["h.example"])
    assert (tmp_path / "admin.key").read_text() == "mine"
    assert not (tmp_path / "ca.crt").exists()


@pytest.mark.parametrize("bad", ["under_score.example", "-x.example", "a..b", "x" * 64 + ".example", "10.0.0.1/24"])
def test_bad_hosts_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        directory.split_hosts([bad])


def test_a_serving_certificate_needs_a_name() -> None:
    with pytest.raises(ValueError, match="at least one"):
        issue_server(new_ca("x"), "s", [], [])


def _server_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(*directory.paths(pki, directory.APISERVER))
    ctx.load_verify_locations(directory.paths(pki, directory.CA)[0])
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _Server:
    """A TLS server requiring client certificates from the CA; answers any HTTP request with a VersionInfo
    whose gitVersion is the client certificate's CN (so a test sees which identity the server accepted)."""

    def __init__(self) -> None:
        self.peers: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            cert = writer.get_extra_info("ssl_object").getpeercert()
            cn = next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")
            self.peers.append(cn)
            await reader.readuntil(b"\r\n\r\n")
            fields = ["buildDate", "compiler", "gitCommit", "gitTreeState", "goVersion", "platform"]
            body = json.dumps({"major": "1", "minor": "0", "gitVersion": cn, **dict.fromkeys(fields, "x")}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n")
            writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        finally:
            writer.close()


async def _start(pki: Path) -> tuple[_Server, asyncio.Server, int]:
    srv = _Server()
    server = await asyncio.start_server(srv.handle, "127.0.0.1", 0, ssl=_server_context(pki))
    return srv, server, server.sockets[0].getsockname()[1]


async def test_a_tls_handshake_with_the_admin_identity(pki: Path) -> None:
    srv, server, port = await _start(pki)
    async with server:
        client = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        client.load_cert_chain(*directory.paths(pki, directory.ADMIN))
        for name in ("localhost", "127.0.0.1", "kos.kos-system.svc"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=name)
            writer.write(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b'"gitVersion": "kos:admin"' in await reader.read()
            writer.close()
        with pytest.raises(ssl.SSLCertVerificationError):  # a name not in the SANs
            await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="elsewhere.example")
    assert srv.peers == ["kos:admin"] * 3


async def test_a_client_certificate_from_another_ca_is_refused(pki: Path, tmp_path: Path) -> None:
    stranger = issue_client(new_ca("other"), "mallory", ["system:masters"])
    (tmp_path / "m.crt").write_bytes(stranger.cert_pem())
    (tmp_path / "m.key").write_bytes(stranger.key_pem())
    srv, server, port = await _start(pki)
    async with server:
        client = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        client.load_cert_chain(tmp_path / "m.crt", tmp_path / "m.key")
        try:  # TLS 1.3: the client may learn of the refusal only when it reads
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="localhost")
            writer.write(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
        except (ssl.SSLError, ConnectionResetError):
            answer = b""
        assert b"mallory" not in answer
    assert srv.peers == []


async def test_a_minted_kubeconfig_works_with_the_kubernetes_client(pki: Path, tmp_path: Path) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    srv, server, port = await _start(pki)
    ca = directory.load(pki, directory.CA)
    alice = issue_client(ca, "alice", ["kos:users"])
    path = tmp_path / "alice.kubeconfig"
    path.write_bytes(kubeconfig(f"https://127.0.0.1:{port}", ca.cert_pem(), alice, "alice"))

    def call() -> str:
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(path), client_configuration=config)
        with kubernetes.client.ApiClient(config) as api:
            return str(kubernetes.client.VersionApi(api).get_code().git_version)

    async with server:
        assert await asyncio.to_thread(call) == "alice"
    assert srv.peers == ["alice"]


@pytest.mark.kubectl
@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not on PATH (tests/integration/test_kubectl.py installs it)"
)
async def test_the_admin_kubeconfig_works_with_kubectl(tmp_path: Path) -> None:
    srv, server = await _start_with_admin_kubeconfig(tmp_path)
    async with server:
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", str(tmp_path / "pki" / "admin.kubeconfig"), "version", "-o", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert json.loads(out)["serverVersion"]["gitVersion"] == "kos:admin", err
    assert srv.peers and set(srv.peers) == {"kos:admin"}


async def _start_with_admin_kubeconfig(tmp_path: Path) -> tuple[_Server, asyncio.Server]:
    """A PKI whose admin.kubeconfig names the server started on it (the port is known only once it listens)."""
    pki = tmp_path / "pki"
    made = directory.init(pki, ["127.0.0.1"])
    srv, server, port = await _start(pki)
    config = kubeconfig(f"https://127.0.0.1:{port}", made[directory.CA].cert_pem(), made[directory.ADMIN], "kos:admin")
    directory.write_private(pki / "admin.kubeconfig", config)
    return srv, server
