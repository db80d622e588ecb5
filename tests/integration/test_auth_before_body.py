"""Review of issue 12: a request certain to be refused as unauthenticated is refused on its head, before its body.

The HTTP layer read a whole request body (up to --max-request-bytes, 1 MiB, for as long as header-timeout +
idle-timeout) before the gate saw the request, so anyone who could reach the port made the apiserver hold a
body per connection: 300 TLS connections sending a 1 MiB body with no credentials grew a `kos apiserver` by
435 MiB. Kubernetes authenticates before a handler reads the body. Now a request with a body and no client
certificate is answered 401 on its head when it has no bearer token, or a token the token file does not hold
(a token a TokenReview may know still has its body read first); the connection then closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kos.apiserver.auth.authz.build import build_admission, build_authorizer
from kos.apiserver.auth.config import AuthSettings, build_gate
from kos.pki.authority import issue_server, new_ca
from kos.testing.apiserver import running_apiserver

TOKEN = "a-token-of-a-user-in-kos-users"
PATH = "/apis/network.example.com/v1alpha1/namespaces/ns1/subnets"
BODY = json.dumps({"apiVersion": "network.example.com/v1alpha1", "kind": "Subnet", "metadata": {"name": "s1"},
                   "spec": {"ipv4": "10.7.0.0/24", "vni": 7}}).encode()  # fmt: skip


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    ca = new_ca("kos-ca")
    srv = issue_server(ca, "kos-apiserver", ["localhost"], [ipaddress.ip_address("127.0.0.1")])
    (tmp_path / "s.crt").write_bytes(srv.cert_pem())
    (tmp_path / "s.key").write_bytes(srv.key_pem())
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    sctx.verify_mode = ssl.CERT_OPTIONAL
    sctx.load_verify_locations(cafile=tmp_path / "ca.crt")
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f"{TOKEN},alice,alice,kos:users\n")
    s = AuthSettings(client_ca_file=tmp_path / "ca.crt", token_auth_file=tokens)
    gate = build_gate(s, authorizer=build_authorizer(s), admission=build_admission())
    try:
        async with running_apiserver(ssl=sctx, gate=gate, shutdown_timeout=1.0) as server:
            yield server.port, ssl.create_default_context(cafile=tmp_path / "ca.crt")
    finally:
        await gate.aclose()


def _head_then_wait(port: int, ctx: ssl.SSLContext, headers: str, body: bytes | None = None) -> bytes:
    """Send a POST head announcing 500,000 bytes (and `body`, if given, as all of it); what the server answers
    within 5 s ("" if nothing)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        length = len(body) if body is not None else 500_000
        s.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
                  f"Content-Length: {length}\r\n\r\n".encode() + (body or b""))  # fmt: skip
        try:
            return s.recv(4096)
        except TimeoutError:
            return b""


async def _ask(port: int, ctx: ssl.SSLContext, headers: str, body: bytes | None = None) -> bytes:
    return await asyncio.to_thread(_head_then_wait, port, ctx, headers, body)


async def test_no_credentials_is_refused_before_the_body(served: tuple[int, ssl.SSLContext]) -> None:
    answer = await _ask(*served, "")
    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert b"present a client certificate or a bearer token" in answer


async def test_a_token_nobody_holds_is_refused_before_the_body(served: tuple[int, ssl.SSLContext]) -> None:
    for auth in ("Authorization: Bearer not-a-token\r\n", "Authorization: Basic YTpi\r\n"):
        answer = await _ask(*served, auth)
        assert answer.startswith(b"HTTP/1.1 401 "), (auth, answer)


async def test_a_known_token_still_gets_its_body_read(served: tuple[int, ssl.SSLContext]) -> None:
    assert await _ask(*served, f"Authorization: Bearer {TOKEN}\r\n") == b""  # waiting for the body, as it should
    answer = await _ask(*served, f"Authorization: Bearer {TOKEN}\r\n", BODY)
    assert answer.startswith(b"HTTP/1.1 201 "), answer
