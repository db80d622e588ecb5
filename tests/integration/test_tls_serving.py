"""The apiserver over HTTPS: calls, HTTP watches and the watch multiplexer work over TLS; the gate sees the
client's certificate in every request (None without one); the files are reloaded while it runs, on its
clock, and polling stops with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kos.api.errors import Unauthorized
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.apiserver.auth.gate import Gate
from kos.apiserver.auth.user import SYSTEM_MASTERS, UserInfo
from kos.apiserver.server import APIServer
from kos.client.rest import Client, WatchEvent
from kos.http.messages import Request
from kos.http.tls import ReloadingContext
from kos.pki.authority import user_of
from kos.testing.apiserver import running_apiserver
from kos.testing.clock import FakeClock
from kos.testing.tlsfiles import TestPKI
from kos.testing.wait import eventually


class CertificateUsers:
    """A test authenticator: a client certificate's CN is the user (in `system:masters`); records every
    request's `peer_cert` as (path, DER or None)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes | None]] = []

    async def authenticate(self, request: Request) -> UserInfo | None:
        self.seen.append((request.path, request.peer_cert))
        if request.peer_cert is None:
            return None
        name, _ = user_of(x509.load_der_x509_certificate(request.peer_cert))
        return UserInfo(name, groups=(SYSTEM_MASTERS,))


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path / "pki")


@pytest.fixture
def users() -> CertificateUsers:
    return CertificateUsers()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(pki: TestPKI, users: CertificateUsers, clock: FakeClock) -> AsyncIterator[APIServer]:
    async with running_apiserver(tls=pki.files(), gate=Gate(users, None), clock=clock) as s:
        yield s


def na(name: str, node: str = "n1") -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace="ns"), spec=NetworkAttachmentSpec(node=node, subnet="s")
    )


async def first_added(c: Client, out: asyncio.Future[str]) -> None:
    async for ev in c.watch(NetworkAttachment, namespace="ns", resource_version="0", timeout_seconds=30):  # type: ignore[arg-type]
        if isinstance(ev, WatchEvent) and ev.type == "ADDED":
            out.set_result(ev.object.metadata.name)
            return


@pytest.mark.parametrize("watch_mux", [False, True], ids=["http-watch", "watchmux"])
async def test_calls_and_watches_over_https_carry_the_client_certificate(
    server: APIServer, pki: TestPKI, users: CertificateUsers, watch_mux: bool
) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    admin = pki.client("admin")
    async with Client(server.url, ssl=pki.client_context(admin), watch_mux=watch_mux) as c:
        added: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        watcher = asyncio.create_task(first_added(c, added))
        await eventually(lambda: server.metrics.watchers.labels("networkattachments")._value.get() == 1)
        await c.create(na("a1"))
        assert await asyncio.wait_for(added, 10) == "a1"
        await watcher
        got = await c.get(NetworkAttachment, "ns", "a1")
        assert got.spec.node == "n1"
    der = admin.cert.public_bytes(Encoding.DER)
    paths = [p for p, _ in users.seen]
    assert any(p.endswith("/watchmux") for p in paths) == watch_mux
    assert users.seen and all(cert == der for _, cert in users.seen)


async def test_without_a_client_certificate_peer_cert_is_none(server: APIServer, pki: TestPKI,
                                                              users: CertificateUsers) -> None:  # fmt: skip
    async with Client(server.url, ssl=pki.client_context()) as c:
        with pytest.raises(Unauthorized):
            await c.list(NetworkAttachment, namespace="ns")
    assert users.seen == [("/apis/network.example.com/v1alpha1/namespaces/ns/networkattachments", None)]


async def test_the_server_reloads_its_files_on_its_clock_and_stops_polling_with_it(
    pki: TestPKI, users: CertificateUsers, clock: FakeClock
) -> None:
    admin = pki.client("admin")
    async with running_apiserver(tls=pki.files(), gate=Gate(users, None), clock=clock) as server:
        tls = server.ssl
        assert isinstance(tls, ReloadingContext)
        first = await served_serial(server, pki)
        rotated = pki.new_server()
        pki.install(rotated)
        await clock.advance(1.0)
        assert tls.reloads == 1
        assert await served_serial(server, pki) == rotated.cert.serial_number != first
        async with Client(server.url, ssl=pki.client_context(admin)) as c:
            assert await c.list(NetworkAttachment, namespace="ns") is not None
    pki.install(pki.new_server())
    await clock.advance(5.0)
    assert tls.reloads == 1  # stopped with the server


async def served_serial(server: APIServer, pki: TestPKI) -> int:
    _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=pki.client_context(),
                                              server_hostname="127.0.0.1")  # fmt: skip
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der).serial_number
