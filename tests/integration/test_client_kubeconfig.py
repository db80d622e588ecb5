"""A Client made from a kubeconfig against a real TLS apiserver: calls, HTTP watches and multiplexed watches
verify the server against the kubeconfig's CA and present its client certificate (a server that requires one
refuses a client without); a bearer token reaches the server on calls and on the multiplexer's upgrade;
clients of other identities (`with_headers`) share one transport, each call carrying its own token, as the
simulated nodes do with `node_tokens`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kos.agent.simnodes import SimNodes
from kos.api.errors import ServiceUnavailable, Unauthorized
from kos.api.meta import ObjectMeta
from kos.api.types import API_VERSION, NetworkAttachment, NetworkAttachmentSpec
from kos.apiserver.auth.gate import Gate
from kos.apiserver.auth.user import SYSTEM_MASTERS, UserInfo
from kos.apiserver.server import APIServer, Settings
from kos.client.rest import Client, ClientConfig, WatchEvent
from kos.http.messages import Request
from kos.pki.authority import Identity, issue_client, issue_server, new_ca
from kos.pki.kubeconfig import kubeconfig
from kos.testing.wait import eventually


@dataclasses.dataclass
class PKI:
    ca: Identity
    server: Identity
    tmp: Path

    def server_context(self, verify: ssl.VerifyMode) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        crt, key = self.tmp / "apiserver.crt", self.tmp / "apiserver.key"
        crt.write_bytes(self.server.cert_pem())
        key.write_bytes(self.server.key_pem())
        ctx.load_cert_chain(crt, key)
        ctx.load_verify_locations(cadata=self.ca.cert_pem().decode())
        ctx.verify_mode = verify
        return ctx

    def client_kubeconfig(self, url: str, user: str) -> Path:
        path = self.tmp / f"{user}.kubeconfig"
        path.write_bytes(kubeconfig(url, self.ca.cert_pem(), issue_client(self.ca, user, ["kos:test"]), user))
        return path

    def token_kubeconfig(self, url: str, token: str) -> Path:
        doc = {
            "current-context": "c",
            "clusters": [{"name": "k", "cluster": {"server": url, "certificate-authority": "ca.crt"}}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        }
        (self.tmp / "ca.crt").write_bytes(self.ca.cert_pem())
        path = self.tmp / "token.kubeconfig"
        path.write_text(yaml.safe_dump(doc))
        return path


@pytest.fixture(scope="module")
def pki_parts() -> tuple[Identity, Identity]:
    ca = new_ca("kos-test-ca")
    return ca, issue_server(ca, "kos-apiserver", ["localhost"], [ipaddress.ip_address("127.0.0.1")])


@pytest.fixture
def pki(pki_parts: tuple[Identity, Identity], tmp_path: Path) -> PKI:
    return PKI(*pki_parts, tmp_path)


class BearerTokens:
    """An authenticator that knows some tokens and records every Authorization header it is shown."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        self.seen: list[tuple[str, str, bytes | None]] = []

    async def authenticate(self, request: Request) -> UserInfo | None:
        header = request.headers.get(b"authorization", b"").decode()
        self.seen.append((request.method, request.path, request.headers.get(b"authorization")))
        if not header:
            return None
        user = self.tokens.get(header.removeprefix("Bearer "))
        if user is None:
            raise Unauthorized("Unauthorized: unknown token")
        return UserInfo(user, groups=(SYSTEM_MASTERS,))


class AllowAll:
    async def authorize(self, attrs: Any) -> Any:
        from kos.apiserver.auth.gate import Decision

        return Decision.ALLOW, ""


@contextlib.asynccontextmanager
async def serving(ctx: ssl.SSLContext, gate: Gate | None = None) -> AsyncIterator[APIServer]:
    s = dataclasses.replace(Settings(storage="memory://", host="127.0.0.1", port=0), shutdown_timeout=1.0)
    server = APIServer(s, ssl=ctx, gate=gate)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def na(name: str, node: str = "n0") -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace="ns"), spec=NetworkAttachmentSpec(node=node, subnet="s")
    )


async def first_event(c: Client) -> WatchEvent:
    async for ev in c.watch(NetworkAttachment, resource_version="0", timeout_seconds=5):
        return ev
    raise AssertionError("the watch ended without an event")


@pytest.mark.parametrize("mux", [False, True], ids=["http-watch", "multiplexed-watch"])
async def test_a_kubeconfig_client_with_a_certificate_the_server_requires(pki: PKI, mux: bool) -> None:
    async with serving(pki.server_context(ssl.CERT_REQUIRED)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        path = pki.client_kubeconfig(server.url, "alice")
        async with Client.from_kubeconfig(path, watch_mux=mux) as c:
            created = await c.create(na("a"))
            assert (await c.get(NetworkAttachment, "ns", "a")).metadata.uid == created.metadata.uid
            ev = await asyncio.wait_for(first_event(c), 10)
            assert ev.type == "ADDED" and ev.object.metadata.name == "a"
        # the same CA and server, no client certificate: the handshake fails
        async with Client.from_kubeconfig(pki.token_kubeconfig(server.url, "t"), watch_mux=mux) as anonymous:
            with pytest.raises(ServiceUnavailable):
                await anonymous.get(NetworkAttachment, "ns", "a")


async def test_a_server_certificate_from_another_ca_is_refused(pki: PKI) -> None:
    async with serving(pki.server_context(ssl.CERT_OPTIONAL)) as server:
        other = PKI(new_ca("other"), pki.server, pki.tmp)
        async with Client.from_kubeconfig(other.client_kubeconfig(server.url, "bob")) as c:
            with pytest.raises(ServiceUnavailable, match="certificate did not verify"):
                await c.get(NetworkAttachment, "ns", "a")


async def test_a_bearer_token_reaches_the_server_on_calls_and_the_multiplexer(pki: PKI) -> None:
    auth = BearerTokens({"good-token": "alice"})
    async with serving(pki.server_context(ssl.CERT_OPTIONAL), Gate(auth, AllowAll())) as server:
        async with Client.from_kubeconfig(pki.token_kubeconfig(server.url, "good-token"), watch_mux=True) as c:
            await c.create(na("a"))
            ev = await asyncio.wait_for(first_event(c), 10)
            assert ev.object.metadata.name == "a"
        assert {(m, p) for m, p, _ in auth.seen} >= {
            ("POST", f"/apis/{API_VERSION}/namespaces/ns/networkattachments"),
            ("GET", f"/apis/{API_VERSION}/watchmux"),
        }
        assert {h for _, _, h in auth.seen} == {b"Bearer good-token"}
        async with Client.from_kubeconfig(pki.token_kubeconfig(server.url, "bad-token")) as c:
            with pytest.raises(Unauthorized):
                await c.get(NetworkAttachment, "ns", "a")


async def test_identities_share_one_transport_each_call_with_its_own_token(pki: PKI) -> None:
    auth = BearerTokens({"admin": "kos:admin", "node-0": "system:node:n0", "node-1": "system:node:n1"})
    async with serving(pki.server_context(ssl.CERT_OPTIONAL), Gate(auth, AllowAll())) as server:
        async with Client.from_kubeconfig(pki.token_kubeconfig(server.url, "admin"), watch_mux=True) as shared:
            nodes = [shared.with_headers({"Authorization": f"Bearer node-{i}"}) for i in range(2)]
            assert all(n.transport is shared.transport for n in nodes)
            auth.seen.clear()
            await nodes[0].create(na("a0"))
            await nodes[1].get(NetworkAttachment, "ns", "a0")
            await shared.get(NetworkAttachment, "ns", "a0")
            ev = await asyncio.wait_for(first_event(nodes[1]), 10)  # over the shared WebSocket: its identity
            assert ev.object.metadata.name == "a0"
            await nodes[0].close()  # closes nothing: the transport is the shared client's
            await nodes[0].get(NetworkAttachment, "ns", "a0")
        assert [h for _, _, h in auth.seen] == [
            b"Bearer node-0", b"Bearer node-1", b"Bearer admin", b"Bearer admin", b"Bearer node-0",
        ]  # fmt: skip
        assert shared.list_objects_received == 0


async def test_simulated_nodes_call_with_their_own_tokens_and_watch_as_the_shared_identity(pki: PKI) -> None:
    auth = BearerTokens({"t0": "system:node:node-0", "t1": "system:node:node-1", "ta": "kos:admin"})
    async with serving(pki.server_context(ssl.CERT_OPTIONAL), Gate(auth, AllowAll())) as server:
        shared = ClientConfig.from_kubeconfig(pki.token_kubeconfig(server.url, "ta"))
        async with Client(shared) as admin:
            # what a previous run of node-0 left on an NA: its agent clears it at start, a status write
            await admin.create(na("b", node="node-0"))
            stale = {"status": {"hostIP": "100.64.0.1", "ifcName": "old0", "macAddress": "aa:bb:cc:dd:ee:ff"}}
            await admin.patch(NetworkAttachment, "ns", "b", stale, subresource="status")
            auth.seen.clear()
            nodes = SimNodes(shared, 2, node_tokens={"node-0": "t0", "node-1": "t1"})
            try:
                await asyncio.wait_for(nodes.start(), 20)
                await eventually(lambda: cleared(admin, "b"))
            finally:
                await nodes.stop()
    writes = {(m, h) for m, p, h in auth.seen if p.endswith("/status")}
    assert writes and all(h == b"Bearer t0" for _, h in writes)  # node-0's own identity
    assert ("GET", f"/apis/{API_VERSION}/watchmux", b"Bearer ta") in auth.seen  # the shared watches


async def cleared(client: Client, name: str) -> bool:
    st = (await client.get(NetworkAttachment, "ns", name)).status
    return not (st.host_ip or st.ifc_name or st.mac_address)


async def test_a_rotated_client_certificate_is_presented_on_the_next_connection(pki: PKI) -> None:
    presented: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("ssl_object").getpeercert()
        presented.append(next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName"))
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    def install(cert: Identity, key: Identity) -> None:  # as a rotation does: new files renamed into place
        for name, data in (("client.crt", cert.cert_pem()), ("client.key", key.key_pem())):
            (pki.tmp / f"{name}.new").write_bytes(data)
            (pki.tmp / f"{name}.new").replace(pki.tmp / name)

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=pki.server_context(ssl.CERT_REQUIRED))
    try:
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        alice, bob, carol = (issue_client(pki.ca, n) for n in ("alice", "bob", "carol"))
        install(alice, alice)
        path = pki.token_kubeconfig(url, "")
        doc = yaml.safe_load(path.read_text())
        doc["users"][0]["user"] = {"client-certificate": "client.crt", "client-key": "client.key"}
        path.write_text(yaml.safe_dump(doc))
        async with Client.from_kubeconfig(path) as c:
            assert (await c.transport.request("GET", "/x")).status == 200
            install(bob, bob)
            assert (await c.transport.request("GET", "/x")).status == 200
            install(carol, bob)  # a pair that does not match: the previous one stays in use
            assert (await c.transport.request("GET", "/x")).status == 200
    finally:
        server.close()
        await server.wait_closed()
    assert presented == ["alice", "bob", "bob"]
