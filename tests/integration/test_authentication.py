"""The authentication union over real TLS connections (issue 12, Deliver 2).

One PKI per module (kos.pki): a client CA (which also signs the server's certificate), a front-proxy CA and
an unrelated CA. The server verifies client certificates against the client CA and the front-proxy CA
(CERT_OPTIONAL), and its gate is `build_gate` of settings naming both CAs and a token file. Who a request
was served as is read from a recording authorizer (`kos.testing.kubeauth.RecordingAuthorizer`) on `/apis`,
a path that needs an authenticated user.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kos.apiserver.auth.authn.webhook import TokenReviewAuthenticator, WebhookEndpoint
from kos.apiserver.auth.config import AuthSettings, build_gate
from kos.apiserver.auth.user import ANONYMOUS, AUTHENTICATED, UserInfo
from kos.apiserver.server import APIServer
from kos.pki.authority import Identity, issue_client, issue_server, new_ca
from kos.testing.apiserver import running_apiserver
from kos.testing.clock import FakeClock
from kos.testing.kubeauth import FakeKubeAuth, RecordingAuthorizer
from kos.testing.rawsocket import read_response
from kos.util.clock import REAL_CLOCK, Clock

SUBNETS = "/apis/network.example.com/v1alpha1/subnets"
TOKENS = 'admin-token,alice,u-1,"kos:users,team-a"\n\nbob-token,bob,u-2\n'


@dataclasses.dataclass
class PKI:
    dir: Path
    client_ca: Identity
    proxy_ca: Identity
    other_ca: Identity
    server: Identity

    def write(self, name: str, ident: Identity) -> tuple[Path, Path]:
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        crt.write_bytes(ident.cert_pem())
        key.write_bytes(ident.key_pem())
        return crt, key

    def client_ctx(self, ident: Identity | None = None) -> ssl.SSLContext:
        """Trusts the server; presents `ident` if given."""
        ctx = ssl.create_default_context(cadata=self.client_ca.cert_pem().decode())
        if ident is not None:
            crt, key = self.write(f"id-{id(ident)}", ident)
            ctx.load_cert_chain(crt, key)
        return ctx

    def server_ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*self.write("server", self.server))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=(self.client_ca.cert_pem() + self.proxy_ca.cert_pem()).decode())
        return ctx

    def settings(self, **over: Any) -> AuthSettings:
        tokens = self.dir / "tokens.csv"
        tokens.write_text(TOKENS)
        client, _ = self.write("client-ca", self.client_ca)
        proxy, _ = self.write("proxy-ca", self.proxy_ca)
        return dataclasses.replace(AuthSettings(client_ca_file=client, requestheader_client_ca_file=proxy,
                                                token_auth_file=tokens), **over)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    client_ca = new_ca("kos-ca")
    server = issue_server(client_ca, "kos-apiserver", ["localhost"], [ipaddress.ip_address("127.0.0.1")])
    return PKI(tmp_path_factory.mktemp("pki"), client_ca, new_ca("front-proxy-ca"), new_ca("elsewhere"), server)


@dataclasses.dataclass
class Served:
    server: APIServer
    seen: RecordingAuthorizer
    pki: PKI

    async def call(self, path: str, ctx: ssl.SSLContext, headers: Sequence[tuple[str, str]] = ()) -> tuple[int, Any]:
        """GET `path` over a new TLS connection: (status, JSON body)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port, ssl=ctx,
                                                       server_hostname="127.0.0.1")  # fmt: skip
        try:
            lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
            status, _, body = await read_response(reader)
            return status, json.loads(body) if body.startswith(b"{") else body
        finally:
            writer.close()

    async def who(self, ctx: ssl.SSLContext, headers: Sequence[tuple[str, str]] = ()) -> UserInfo | int:
        """The user `/apis` was served as, or the status it was refused with."""
        before = len(self.seen.users)
        status, _ = await self.call("/apis", ctx, headers)
        if status != 200:
            assert len(self.seen.users) == before
            return status
        return self.seen.users[-1]


@pytest.fixture
async def served(pki: PKI) -> AsyncIterator[Served]:
    async with serve(pki, pki.settings()) as s:
        yield s


@contextlib.asynccontextmanager
async def serve(
    pki: PKI, settings: AuthSettings, clock: Clock = REAL_CLOCK, review: WebhookEndpoint | None = None
) -> AsyncIterator[Served]:
    """An HTTPS apiserver whose gate is `build_gate(settings)` with a recording authorizer."""
    seen = RecordingAuthorizer()
    gate = build_gate(settings, clock, authorizer=seen, token_review=review)
    try:
        async with running_apiserver(ssl=pki.server_ctx(), gate=gate, shutdown_timeout=1.0) as server:
            yield Served(server, seen, pki)
    finally:
        await gate.aclose()


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


# --- anonymous and x509 ---------------------------------------------------------------------------


async def test_anonymous_reaches_only_the_health_paths(served: Served) -> None:
    ctx = served.pki.client_ctx()
    status, body = await served.call(SUBNETS, ctx)
    assert status == 401 and body["kind"] == "Status" and body["code"] == 401 and body["reason"] == "Unauthorized"
    assert (await served.call("/apis", ctx))[0] == 401
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        assert (await served.call(path, ctx))[0] == 200, path
    assert served.seen.users[-1] == ANONYMOUS


async def test_a_client_certificate_is_its_cn_in_its_organizations(served: Served) -> None:
    alice = issue_client(served.pki.client_ca, "alice", ["kos:users", "team-a"])
    ctx = served.pki.client_ctx(alice)
    assert await served.who(ctx) == UserInfo("alice", "", ("kos:users", "team-a", AUTHENTICATED))
    assert (await served.call(SUBNETS, ctx))[0] == 200
    masters = issue_client(served.pki.client_ca, "root", ["system:masters", AUTHENTICATED])
    assert await served.who(served.pki.client_ctx(masters)) == UserInfo("root", "", ("system:masters", AUTHENTICATED))


async def test_a_certificate_from_another_ca_is_refused_in_the_handshake(served: Served) -> None:
    """Python's ssl has no verify callback that could let the request through to a 401: the handshake fails,
    and nothing of HTTP is answered."""
    mallory = issue_client(served.pki.other_ca, "mallory", ["system:masters"])
    ctx = served.pki.client_ctx(mallory)
    received = b""
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.server.port, ssl=ctx,
                                                       server_hostname="127.0.0.1")  # fmt: skip
        try:
            writer.write(b"GET /apis HTTP/1.1\r\nHost: x\r\n\r\n")
            received = await asyncio.wait_for(reader.read(), 5)
            raise ConnectionError("the server closed the connection")  # EOF: refused too
        finally:
            writer.close()
    assert received == b"" and served.seen.users == []


async def test_a_front_proxy_certificate_is_not_a_user(served: Served) -> None:
    proxy = issue_client(served.pki.proxy_ca, "front-proxy-client")
    ctx = served.pki.client_ctx(proxy)
    assert await served.who(ctx) == 401  # names no user (no X-Remote-User) and is no client certificate
    assert (await served.call("/healthz", ctx))[0] == 401  # refused credentials are not anonymous
    assert await served.who(ctx, bearer("bob-token")) == UserInfo("bob", "u-2", (AUTHENTICATED,))


# --- the front proxy ------------------------------------------------------------------------------

FORGED = [("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")]


async def test_forged_remote_headers_are_ignored(served: Served) -> None:
    pki = served.pki
    assert await served.who(pki.client_ctx(), FORGED) == 401
    alice = issue_client(pki.client_ca, "alice", ["team-a"])
    assert await served.who(pki.client_ctx(alice), FORGED) == UserInfo("alice", "", ("team-a", AUTHENTICATED))
    assert await served.who(pki.client_ctx(), [*FORGED, *bearer("bob-token")]) == UserInfo(
        "bob", "u-2", (AUTHENTICATED,)
    )


async def test_the_front_proxy_names_the_user(served: Served) -> None:
    proxy = served.pki.client_ctx(issue_client(served.pki.proxy_ca, "front-proxy-client"))
    headers = [
        ("x-remote-user", "carol"),
        ("X-Remote-Group", "kos:users"),
        ("X-Remote-Group", "team b"),
        ("X-Remote-Extra-Scopes", "read"),
        ("X-Remote-Extra-scopes", "write"),
        ("X-Remote-Extra-Example.com%2Fteam", "networks"),
        ("X-Remote-Group", "system:authenticated"),
    ]
    user = await served.who(proxy, headers)
    assert isinstance(user, UserInfo)
    assert (user.name, user.groups) == ("carol", ("kos:users", "team b", AUTHENTICATED))
    assert dict(user.extra) == {"scopes": ("read", "write"), "example.com/team": ("networks",)}
    assert await served.who(proxy, [("X-Remote-User", "dave")]) == UserInfo("dave", "", (AUTHENTICATED,))


async def test_a_front_proxy_cn_not_allowed_is_refused(pki: PKI) -> None:
    async with serve(pki, pki.settings(requestheader_allowed_names=("aggregator",))) as s:
        allowed = pki.client_ctx(issue_client(pki.proxy_ca, "aggregator"))
        assert await s.who(allowed, [("X-Remote-User", "erin")]) == UserInfo("erin", "", (AUTHENTICATED,))
        other = pki.client_ctx(issue_client(pki.proxy_ca, "someone-else"))
        status, body = await s.call("/apis", other, [("X-Remote-User", "erin")])
        assert status == 401 and body["kind"] == "Status"
        assert s.seen.users[-1].name == "erin"  # only the allowed proxy's request got through


async def test_custom_header_names(pki: PKI) -> None:
    settings = pki.settings(requestheader_username_headers=("X-User", "X-Remote-User"),
                            requestheader_group_headers=("X-Groups",),
                            requestheader_extra_headers_prefix=("X-Extra-",))  # fmt: skip
    async with serve(pki, settings) as s:
        proxy = pki.client_ctx(issue_client(pki.proxy_ca, "front-proxy-client"))
        headers = [("X-Remote-User", "second"), ("x-user", "first"), ("X-Groups", "g"), ("X-Remote-Group", "no"),
                   ("X-Extra-K", "v")]  # fmt: skip
        assert await s.who(proxy, headers) == UserInfo("first", "", ("g", AUTHENTICATED), {"k": ("v",)})


# --- bearer tokens --------------------------------------------------------------------------------


async def test_token_file_users_and_bad_tokens(served: Served) -> None:
    ctx = served.pki.client_ctx()
    assert await served.who(ctx, bearer("admin-token")) == UserInfo("alice", "u-1", ("kos:users", "team-a",
                                                                                     AUTHENTICATED))  # fmt: skip
    assert await served.who(ctx, [("authorization", "bearer bob-token")]) == UserInfo("bob", "u-2", (AUTHENTICATED,))
    status, body = await served.call(SUBNETS, ctx, bearer("admin-tokeN"))
    assert status == 401 and body["kind"] == "Status" and "admin-tokeN" not in json.dumps(body)
    assert (await served.call("/healthz", ctx, bearer("nope")))[0] == 401  # an invalid token is not anonymous
    assert (await served.call("/healthz", ctx, [("Authorization", "Basic YTpi")]))[0] == 200  # not a bearer token


async def test_a_client_certificate_comes_before_a_token(served: Served) -> None:
    alice = served.pki.client_ctx(issue_client(served.pki.client_ca, "alice"))
    assert await served.who(alice, bearer("bob-token")) == UserInfo("alice", "", (AUTHENTICATED,))
    assert await served.who(alice, bearer("no-such-token")) == UserInfo("alice", "", (AUTHENTICATED,))


# --- delegated TokenReview ------------------------------------------------------------------------


async def test_delegated_token_review_is_cached_for_the_ttl(pki: PKI) -> None:
    fake_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    fake_ctx.load_cert_chain(*pki.write("server", pki.server))
    clock = FakeClock()
    async with FakeKubeAuth(ssl=fake_ctx, require="kos-apiserver-token") as fake:
        fake.tokens["sa-token"] = UserInfo("system:serviceaccount:ns:sa", "uid-9", ("system:serviceaccounts",),
                                           {"authentication.kubernetes.io/node-name": ("node-1",)})  # fmt: skip
        review = WebhookEndpoint(fake.url, pki.client_ctx(), {"Authorization": "Bearer kos-apiserver-token"})
        async with serve(pki, pki.settings(), clock, review) as s:
            ctx = pki.client_ctx()
            expected = UserInfo("system:serviceaccount:ns:sa", "uid-9", ("system:serviceaccounts", AUTHENTICATED),
                                {"authentication.kubernetes.io/node-name": ("node-1",)})  # fmt: skip
            assert await s.who(ctx, bearer("sa-token")) == expected
            assert fake.token_reviews == 1 and fake.requests[0][1]["spec"] == {"token": "sa-token"}
            assert await s.who(ctx, bearer("sa-token")) == expected
            assert fake.token_reviews == 1  # within the TTL: not reviewed again
            assert await s.who(ctx, bearer("bob-token")) == UserInfo("bob", "u-2", (AUTHENTICATED,))
            assert fake.token_reviews == 1  # the token file answered first
            await clock.advance(10.5)
            assert await s.who(ctx, bearer("sa-token")) == expected
            assert fake.token_reviews == 2  # after the TTL: reviewed again

            assert await s.who(ctx, bearer("unknown")) == 401
            assert await s.who(ctx, bearer("unknown")) == 401
            assert fake.token_reviews == 3  # "not authenticated" is cached too
            fake.fail = True
            assert await s.who(ctx, bearer("other")) == 401
            assert await s.who(ctx, bearer("other")) == 401
            assert fake.token_reviews == 5  # a failed review is not cached


async def test_concurrent_requests_with_one_token_share_one_review() -> None:
    """All eight start in one turn of the loop, before a review (a real HTTP round trip) can have answered."""
    async with FakeKubeAuth() as fake:
        fake.tokens["sa-token"] = UserInfo("sa")
        review = TokenReviewAuthenticator(WebhookEndpoint(fake.url), clock=FakeClock())
        try:
            users = await asyncio.gather(*(review.authenticate_token("sa-token") for _ in range(8)))
        finally:
            await review.aclose()
        assert users == [UserInfo("sa", "", (AUTHENTICATED,))] * 8
        assert fake.token_reviews == 1


async def test_token_review_with_wrong_credentials_refuses(pki: PKI) -> None:
    async with FakeKubeAuth(require="right") as fake:
        fake.tokens["sa-token"] = UserInfo("sa")
        async with serve(pki, pki.settings(), FakeClock(), WebhookEndpoint(fake.url, None, {})) as s:
            assert await s.who(pki.client_ctx(), bearer("sa-token")) == 401
            assert fake.token_reviews == 0
