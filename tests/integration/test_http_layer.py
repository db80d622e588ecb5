"""The one HTTP layer (kos.http): every mix of pipelined requests, and the same service over TLS.

Raw sockets for pipelining (a call, a watch, a health check and a malformed
request in one packet, in several orders: each answered in order; a malformed
one gets a 400 after the answers before it, and the connection closes), and a
TLS listener with a self-signed CA (trustme) serving a call, a watch and the
watch multiplexer to the official Kubernetes client and a plain ssl client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kos.apiserver.server import APIServer
from kos.testing.apiserver import running_apiserver
from kos.testing.rawsocket import mux_records, read_head, read_response, request, ws_json, ws_message, ws_upgrade

P = "/apis/network.example.com/v1alpha1"
SUBNETS = f"{P}/namespaces/hl/subnets"
MALFORMED = b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n"  # a header line without a colon


def subnet(name: str, vni: int) -> dict[str, object]:
    return {"apiVersion": "network.example.com/v1alpha1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"vni": vni, "ipv4": f"10.{vni}.0.0/24"}}  # fmt: skip


def _part(kind: str, n: int) -> bytes:
    if kind == "call":
        return request("POST", SUBNETS, subnet(f"m{n}", 100 + n))
    if kind == "watch":
        return request("GET", f"{SUBNETS}?watch=1&timeoutSeconds=1&resourceVersion=0")
    if kind == "health":
        return request("GET", "/healthz")
    return MALFORMED


async def _expect(reader: asyncio.StreamReader, kind: str, n: int) -> None:
    status, headers, body = await read_response(reader)
    if kind == "call":
        assert status == 201 and json.loads(body)["metadata"]["name"] == f"m{n}"
    elif kind == "watch":
        assert status == 200 and headers.get("transfer-encoding") == "chunked"
        events = [json.loads(line) for line in body.splitlines()]
        assert all(e["type"] == "ADDED" for e in events)
    elif kind == "health":
        assert (status, body) == (200, b"ok")
    else:
        assert status == 400 and json.loads(body)["reason"] == "BadRequest"


ORDERS = [
    ("call", "watch", "health", "bad"),
    ("watch", "bad", "call", "health"),
    ("health", "call", "bad", "watch"),
    ("bad", "call", "watch", "health"),
    ("call", "health", "watch", "call"),
    ("watch", "health", "call", "watch"),
]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_every_mix_of_pipelined_requests_is_answered_in_order(server: APIServer, order: tuple[str, ...]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"".join(_part(k, i) for i, k in enumerate(order)))
        for i, kind in enumerate(order):
            await _expect(reader, kind, i)
            if kind == "bad":  # nothing after a malformed request is answered: the connection closes
                break
        else:  # all answered; the connection is still usable
            writer.write(request("GET", "/readyz", close=True))
            assert (await read_response(reader))[::2] == (200, b"ok")
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_a_head_request_gets_the_length_and_no_body(server: APIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request("HEAD", "/version") + request("GET", "/healthz"))
        status, headers = await read_head(reader)
        assert status == 200 and int(headers["content-length"]) > 0
        assert (await read_response(reader))[::2] == (200, b"ok")  # the next answer follows at once
    finally:
        writer.close()


# --- TLS ------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tls_apiserver(ca_dir: Path, *, check_cache: bool = True) -> AsyncIterator[tuple[APIServer, ssl.SSLContext]]:
    """An apiserver serving HTTPS with a throw-away CA (trustme), and a client context trusting it."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    ca_file = ca_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with running_apiserver(shutdown_timeout=1.0, ssl=server_ctx, check_cache=check_cache) as s:
        s.ca_file = str(ca_file)  # type: ignore[attr-defined]
        yield s, client_ctx


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[APIServer, ssl.SSLContext]]:
    async with tls_apiserver(tmp_path) as pair:
        yield pair


async def test_a_call_a_watch_and_the_multiplexer_over_tls(tls_server: tuple[APIServer, ssl.SSLContext]) -> None:
    server, ctx = tls_server
    assert server.url.startswith("https://")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx, server_hostname="127.0.0.1")
    try:
        writer.write(request("POST", SUBNETS, subnet("t1", 61)) + request("GET", f"{SUBNETS}/t1"))
        assert (await read_response(reader))[0] == 201
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["metadata"]["name"] == "t1"
        writer.write(request("GET", f"{SUBNETS}?watch=1&resourceVersion=0&timeoutSeconds=1"))
        status, headers, body = await read_response(reader)
        assert status == 200 and headers.get("transfer-encoding") == "chunked"
        assert json.loads(body.splitlines()[0])["object"]["metadata"]["name"] == "t1"
        writer.write(ws_upgrade() + ws_json({"op": "watch", "id": 3, "resource": "subnets", "resourceVersion": "0"}))
        status, headers = await read_head(reader)
        assert status == 101
        opcode, data = await ws_message(reader)
        (wid, line), *_ = mux_records(data)
        assert opcode == 2 and wid == 3 and json.loads(line)["object"]["metadata"]["name"] == "t1"
    finally:
        writer.close()


async def test_the_kubernetes_client_over_tls(tls_server: tuple[APIServer, ssl.SSLContext]) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    server, _ = tls_server
    cfg = kubernetes.client.Configuration()
    cfg.host = server.url
    cfg.ssl_ca_cert = server.ca_file  # type: ignore[attr-defined]

    def use() -> tuple[str, list[str]]:
        with kubernetes.client.ApiClient(cfg) as api:
            custom = kubernetes.client.CustomObjectsApi(api)
            made = custom.create_namespaced_custom_object("network.example.com", "v1alpha1", "hl", "subnets",
                                                          subnet("k1", 62))  # fmt: skip
            w = kubernetes.watch.Watch()
            seen = [e["object"]["metadata"]["name"] for e in w.stream(
                custom.list_namespaced_custom_object, "network.example.com", "v1alpha1", "hl", "subnets",
                resource_version="0", timeout_seconds=1)]  # fmt: skip
            return made["metadata"]["name"], seen

    name, seen = await asyncio.to_thread(use)
    assert name == "k1" and seen == ["k1"]


async def test_expect_100_continue_is_answered_before_the_body(server: APIServer) -> None:
    """curl sends `Expect: 100-continue` for bodies over 1 KiB and waits (a second) for the go-ahead."""
    body = json.dumps(subnet("ex", 70)).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())  # fmt: skip
        assert (await read_head(reader))[0] == 100
        writer.write(body)
        status, _, answer = await read_response(reader)
        assert status == 201 and json.loads(answer)["metadata"]["name"] == "ex"
        writer.write(request("GET", "/healthz", headers={"Expect": "something-else"}))
        assert (await read_response(reader))[0] == 417
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_an_http_1_0_watch_streams_unchunked_and_closes(server: APIServer) -> None:
    """HTTP/1.0 has no chunked encoding: the stream's end is the connection's end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request("POST", SUBNETS, subnet("old", 71), version="1.0"))
        assert (await read_response(reader))[0] == 201
    finally:
        writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request("GET", f"{SUBNETS}?watch=1&resourceVersion=0&timeoutSeconds=1", version="1.0"))
        status, headers = await read_head(reader)
        assert status == 200 and "transfer-encoding" not in headers
        lines = (await asyncio.wait_for(reader.read(), 5)).splitlines()
        assert [json.loads(line)["object"]["metadata"]["name"] for line in lines] == ["old"]
    finally:
        writer.close()


async def test_shutdown_over_tls_ends_a_watch_within_seconds(tmp_path: Path) -> None:
    # the test stops the server itself, so there is no cache left to check afterwards
    async with tls_apiserver(tmp_path, check_cache=False) as (server, ctx):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx, server_hostname="127.0.0.1")
        try:
            writer.write(request("GET", f"{SUBNETS}?watch=1"))
            assert (await read_head(reader))[0] == 200
            await server.stop()  # the context's stop then finds it stopped
            assert await asyncio.wait_for(reader.read(), 5) == b"0\r\n\r\n"  # the stream's end, then the close
        finally:
            writer.close()
