"""kos.http.tls over real TLS connections: TLS 1.2 or newer only, the client's certificate in every request,
and certificate, key and client-CA rotation without a restart (new connections see the new files, open ones
keep theirs, files that do not load leave the old ones serving)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from kos.http.messages import Reply, Request, Response
from kos.http.server import HTTPServer
from kos.http.tls import ReloadingContext, ServingFiles, TLSFilesError, server_context
from kos.pki.authority import new_ca
from kos.testing import rawsocket
from kos.testing.clock import FakeClock
from kos.testing.tlsfiles import TestPKI, write_atomically, write_in_place


class PeerCertEcho:
    """An application answering each request with the serial of the client's certificate ("none" without)."""

    async def serve(self, request: Request) -> Response:
        cert = request.peer_cert
        serial = "none" if cert is None else str(x509.load_der_x509_certificate(cert).serial_number)
        return Reply(200, serial.encode(), content_type=b"text/plain")

    def refuse(self, status: int, message: str) -> Reply:
        return Reply(status, message.encode())


class Connection:
    """One client connection: `ask()` sends a request and returns the answer's body; `server_serial` is the
    serial of the certificate the server presented in this connection's handshake."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        self.server_serial = x509.load_der_x509_certificate(der).serial_number

    async def ask(self) -> str:
        self.writer.write(rawsocket.request("GET", "/"))
        status, _, body = await rawsocket.read_response(self.reader)
        assert status == 200
        return body.decode()

    def close(self) -> None:
        self.writer.close()


REFUSED = (ssl.SSLError, ConnectionError)
"""What a client sees when the server fails the handshake: asyncio's and uvloop's SSL protocols close the
connection without sending OpenSSL's alert, so the client sees an end of stream or a reset, not the alert;
`handshake_in_memory` shows the alert itself."""


def handshake_in_memory(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> dict[str, ssl.SSLError]:
    """A handshake between `server_ctx` and `client_ctx` through memory buffers, every byte delivered
    (including the alerts the event loops' transports drop); the errors each side raised, by side."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    server = server_ctx.wrap_bio(bios[0], bios[1], server_side=True)
    client = client_ctx.wrap_bio(bios[2], bios[3], server_hostname="127.0.0.1")
    sides = {"client": (client, bios[3], bios[0]), "server": (server, bios[1], bios[2])}
    errors: dict[str, ssl.SSLError] = {}
    done: set[str] = set()
    for _ in range(8):
        for name, (obj, out, peer_in) in sides.items():
            if name not in done and name not in errors:
                try:
                    obj.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as e:
                    errors[name] = e
            peer_in.write(out.read())
    if "client" in done and "server" in errors:  # TLS 1.3: the client learns of the alert when it reads
        try:
            client.read(1)
        except ssl.SSLError as e:
            errors["client"] = e
    return errors


async def connect(port: int, ctx: ssl.SSLContext) -> Connection:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1")
    return Connection(reader, writer)


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path / "pki")


@pytest.fixture
async def serving(pki: TestPKI) -> AsyncIterator[tuple[HTTPServer, ReloadingContext]]:
    reloading = ReloadingContext(pki.files())
    server = HTTPServer(PeerCertEcho(), "127.0.0.1", 0, ssl=reloading.context)
    await server.start()
    try:
        yield server, reloading
    finally:
        await server.stop(1.0)


def serial_of(pki_file: Path) -> int:
    return x509.load_pem_x509_certificate(pki_file.read_bytes()).serial_number


async def test_only_tls_1_2_and_newer(pki: TestPKI, serving: tuple[HTTPServer, ReloadingContext]) -> None:
    server, reloading = serving
    assert reloading.context.minimum_version == ssl.TLSVersion.TLSv1_2
    old = pki.client_context(maximum=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(REFUSED):
        await (await connect(server.port, old)).ask()
    errors = handshake_in_memory(reloading.context, old)
    assert errors["server"].reason == "UNSUPPORTED_PROTOCOL"
    assert errors["client"].reason == "TLSV1_ALERT_PROTOCOL_VERSION"
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        conn = await connect(server.port, pki.client_context(maximum=version))
        assert conn.writer.get_extra_info("ssl_object").version() == ("TLSv1.2" if version.value == 0x0303
                                                                      else "TLSv1.3")  # fmt: skip
        assert await conn.ask() == "none"
        conn.close()


async def test_peer_cert_is_the_client_certificate_or_none(
    pki: TestPKI, serving: tuple[HTTPServer, ReloadingContext]
) -> None:
    server, _ = serving
    alice = pki.client("alice", ("kos:users",))
    conn = await connect(server.port, pki.client_context(alice))
    assert await conn.ask() == str(alice.cert.serial_number)
    assert await conn.ask() == str(alice.cert.serial_number)  # every request on the connection carries it
    conn.close()
    anonymous = await connect(server.port, pki.client_context())
    assert await anonymous.ask() == "none"
    anonymous.close()


@pytest.mark.parametrize("tls_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_certificate_from_an_unknown_ca_fails_the_handshake(
    pki: TestPKI, serving: tuple[HTTPServer, ReloadingContext], tls_version: ssl.TLSVersion
) -> None:
    """Python's ssl has no verify callback: the server cannot let the certificate through to answer 401, the
    handshake fails with the alert unknown_ca (with TLS 1.3 the client learns it at its first read)."""
    server, reloading = serving
    stranger = pki.client("mallory", ca=new_ca("another-ca"))
    client = pki.client_context(stranger, maximum=tls_version)
    with pytest.raises(REFUSED):
        await (await connect(server.port, client)).ask()
    errors = handshake_in_memory(reloading.context, client)
    assert errors["server"].reason == "CERTIFICATE_VERIFY_FAILED"
    assert errors["client"].reason == "TLSV1_ALERT_UNKNOWN_CA"


async def test_rotation_reaches_new_connections_and_spares_open_ones(
    pki: TestPKI, serving: tuple[HTTPServer, ReloadingContext]
) -> None:
    server, reloading = serving
    first = serial_of(pki.cert_file)
    before = await connect(server.port, pki.client_context())
    assert before.server_serial == first
    assert not reloading.check()  # nothing changed
    rotated = pki.new_server()
    pki.install(rotated)
    assert reloading.check()
    assert reloading.reloads == 1
    after = await connect(server.port, pki.client_context())
    assert after.server_serial == rotated.cert.serial_number != first
    assert await before.ask() == "none"  # the old connection still works, on its old certificate
    assert before.server_serial == first
    assert await after.ask() == "none"
    before.close()
    after.close()


async def test_files_that_do_not_load_keep_the_old_ones_serving(
    pki: TestPKI, serving: tuple[HTTPServer, ReloadingContext], caplog: pytest.LogCaptureFixture
) -> None:
    server, reloading = serving
    first = serial_of(pki.cert_file)
    rotated = pki.new_server()
    pem = rotated.cert_pem()
    write_in_place(pki.cert_file, pem[: len(pem) // 2])  # half written
    assert not reloading.check()
    assert not reloading.check()  # no change since: not tried (nor logged) again
    assert reloading.failures == 1
    assert (await connect(server.port, pki.client_context())).server_serial == first
    write_in_place(pki.cert_file, pem)  # whole now, but the key on disk is still the old one: mismatched
    assert not reloading.check()
    assert reloading.failures == 2
    assert (await connect(server.port, pki.client_context())).server_serial == first
    write_atomically(pki.key_file, rotated.key_pem())
    assert reloading.check()
    assert (await connect(server.port, pki.client_context())).server_serial == rotated.cert.serial_number
    errors = [r for r in caplog.records if "do not load" in r.getMessage()]
    assert len(errors) == 2
    assert all(b"PRIVATE KEY" not in r.getMessage().encode() for r in caplog.records)


async def test_a_rotated_client_ca_bundle_is_what_new_handshakes_verify_against(
    pki: TestPKI, serving: tuple[HTTPServer, ReloadingContext]
) -> None:
    """The swap in `sni_callback` replaces the trust store client certificates are verified against, not
    only the serving certificate."""
    server, reloading = serving
    other = new_ca("next-ca")
    old_client, new_client = pki.client("old"), pki.client("new", ca=other)
    held = await connect(server.port, pki.client_context(old_client))
    assert await held.ask() == str(old_client.cert.serial_number)
    with pytest.raises(REFUSED):
        await (await connect(server.port, pki.client_context(new_client))).ask()
    pki.trust(other)
    assert reloading.check()
    conn = await connect(server.port, pki.client_context(new_client))
    assert await conn.ask() == str(new_client.cert.serial_number)
    with pytest.raises(REFUSED):
        await (await connect(server.port, pki.client_context(old_client))).ask()
    assert handshake_in_memory(reloading.context, pki.client_context(old_client))["client"].reason == (
        "TLSV1_ALERT_UNKNOWN_CA")  # fmt: skip
    assert not handshake_in_memory(reloading.context, pki.client_context(new_client))
    assert await held.ask() == str(old_client.cert.serial_number)  # verified once, at its handshake
    held.close()
    conn.close()


async def test_polling_runs_on_the_clock_until_stopped(pki: TestPKI) -> None:
    clock = FakeClock()
    reloading = ReloadingContext(pki.files(), clock=clock, interval=1.0)
    reloading.start()
    pki.install(pki.new_server())
    await clock.advance(0.5)
    assert reloading.reloads == 0
    await clock.advance(0.5)
    assert reloading.reloads == 1
    reloading.stop()
    pki.install(pki.new_server())
    await clock.advance(5)
    assert reloading.reloads == 1


def test_bad_files_are_named(pki: TestPKI, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not PEM\n")
    with pytest.raises(TLSFilesError, match=r"junk\.pem: not a PEM certificate"):
        server_context(ServingFiles(junk, pki.key_file))
    with pytest.raises(TLSFilesError, match=r"junk\.pem: not a PEM private key"):
        server_context(ServingFiles(pki.cert_file, junk))
    other_key = tmp_path / "other-key.pem"
    other_key.write_bytes(pki.new_server().key_pem())
    with pytest.raises(TLSFilesError, match="is not the private key of the certificate"):
        server_context(ServingFiles(pki.cert_file, other_key))
    with pytest.raises(TLSFilesError, match=r"junk\.pem: holds no PEM certificate"):
        server_context(ServingFiles(pki.cert_file, pki.key_file, (junk,)))
    with pytest.raises(OSError):
        ReloadingContext(ServingFiles(tmp_path / "missing.pem", pki.key_file))
    ctx = server_context(pki.files(client_cas=False))
    assert ctx.verify_mode == ssl.CERT_NONE
    assert server_context(pki.files()).verify_mode == ssl.CERT_OPTIONAL
