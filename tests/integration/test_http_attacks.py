"""The one HTTP layer tried as an attacker and as a strict HTTP client would (issue 11, after issue 10's inputs).

Each test sends its input over a raw socket and checks the answer RFC 9112/9110
(and Go's net/http, so kube-apiserver) gives: smuggling shapes are refused and
the connection closed; a response header can never be split by what a client
sent; what the application raises is a 500, never a connection left hanging;
the trailer section, pipelined bodies and a refused WebSocket handshake meet the
same bounds as everything else; an absolute-form target is served; a request
without a Host, with two, with an unknown transfer coding or an HTTP version
other than 1.x is refused; a TLS handshake that never completes is dropped
after the header timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kos.apiserver.server import APIServer
from kos.http.messages import Reply, Request, Response, Streaming
from kos.http.server import HTTPServer
from kos.testing.apiserver import running_apiserver
from kos.testing.rawsocket import WS_PATH, read_head, read_response, request

P = "/apis/network.example.com/v1alpha1"
SUBNETS = f"{P}/namespaces/ha/subnets"
HEALTH = request("GET", "/healthz")


def subnet(name: str, vni: int, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "network.example.com/v1alpha1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"vni": vni, "ipv4": f"10.{vni}.0.0/24"}, **extra}  # fmt: skip


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with running_apiserver() as s:
        yield s


async def exchange(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    return reader, writer


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sends until it closes the connection, or None if it has not closed it within `seconds`."""
    out = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(65536):
                out += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return out


# --- smuggling shapes (all refused by llhttp; kept as regressions) --------------------------------

SMUGGLING = {
    "content-length-and-chunked": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-content-lengths": b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "content-length-list": b"Content-Length: 2, 2\r\n\r\n{}",
    "chunk-size-overflow": b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
    "chunked-twice": b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "final-coding-not-chunked": b"Transfer-Encoding: gzip\r\n\r\n{}",
    "obs-fold": b"X-A: a\r\n b\r\n\r\n",
    "bare-lf": b"X-A: a\n\n",
    "space-before-colon": b"X-A : a\r\n\r\n",
    "nul-in-value": b"X-A: a\x00b\r\n\r\n",
}


@pytest.mark.parametrize("tail", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_smuggling_shapes_are_400_and_the_connection_closes(server: APIServer, tail: bytes) -> None:
    reader, writer = await exchange(server.port, f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\n".encode() + tail + HEALTH)
    try:
        status, headers, body = await read_response(reader)
        assert status in (400, 501) and json.loads(body)["kind"] == "Status" and headers.get("connection") == "close"
        assert await closed_within(reader, 5) == b""  # the pipelined /healthz is not answered
    finally:
        writer.close()


# --- response splitting and what the application raises -------------------------------------------


async def test_a_warning_never_splits_the_response_head(server: APIServer) -> None:
    """A JSON field name may hold CR LF; echoed in the Warning header it once added a Set-Cookie field."""
    body = subnet("w1", 81, **{"a\r\nSet-Cookie: evil=1\r\n\r\nHTTP/1.1 200 OK": 1})
    reader, writer = await exchange(server.port, request("POST", f"{SUBNETS}?fieldValidation=Warn", body) + HEALTH)
    try:
        status, headers, _ = await read_response(reader)
        assert status == 201 and "set-cookie" not in headers
        assert "Set-Cookie: evil=1" in headers["warning"]  # the text, on one line
        assert (await read_response(reader))[::2] == (200, b"ok")
    finally:
        writer.close()


async def test_a_warning_outside_latin_1_is_sent_as_utf_8(server: APIServer) -> None:
    """It raised UnicodeEncodeError in the connection's task: no answer, and the connection hung."""
    reader, writer = await exchange(server.port, request("POST", f"{SUBNETS}?fieldValidation=Warn",
                                                          subnet("w2", 82, ж=1)) + HEALTH)  # fmt: skip
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert line.startswith(b"HTTP/1.1 201 ") and '"unknown field \\"ж\\""'.encode() in line
        length = int(next(h for h in line.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1])
        await reader.readexactly(length)
        assert (await read_response(reader))[::2] == (200, b"ok")
    finally:
        writer.close()


class _Failing:
    """An application whose /call raises and whose /stream raises after its head (and a chunk)."""

    async def serve(self, request: Request) -> Response:
        if request.path == "/stream":

            async def body(sink: Any) -> None:
                sink.write(b"first\n")
                raise RuntimeError("the stream broke")

            return Streaming(body)
        if request.path == "/call":
            raise RuntimeError("the handler broke")
        return Reply(200, b"ok")

    def refuse(self, status: int, message: str) -> Reply:
        return Reply(status, message.encode())


async def test_what_the_application_raises_is_a_500_or_a_closed_connection() -> None:
    """An exception once ended the connection's task silently: no answer, and no timer (requests queued)."""
    server = HTTPServer(_Failing(), "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await exchange(server.port, request("GET", "/call") + request("GET", "/ok"))
        status, headers, _ = await read_response(reader)
        assert status == 500 and headers.get("connection") == "close"
        assert await closed_within(reader, 5) == b""
        writer.close()
        reader, writer = await exchange(server.port, request("GET", "/stream") + request("GET", "/ok"))
        assert (await read_head(reader))[0] == 200
        rest = await closed_within(reader, 5)
        assert rest is not None and b"first" in rest and not rest.endswith(b"0\r\n\r\n")  # cut, not ended
        writer.close()
    finally:
        await server.stop(1.0)


# --- bounds ---------------------------------------------------------------------------------------


async def test_a_trailer_that_never_ends_is_refused_after_a_bounded_amount(server: APIServer) -> None:
    """The head's bounds did not cover the trailer section: 256 MiB of one trailer field grew RSS by 330 MB."""
    reader, writer = await exchange(server.port, f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                    "application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: ".encode())  # fmt: skip
    answer = asyncio.create_task(read_response(reader, 30))
    before, sent = rss(), 0
    try:
        while sent < 64 << 20 and not answer.done():
            writer.write(b"a" * 65536)
            sent += 65536
            await writer.drain()
            await asyncio.sleep(0)
    except (ConnectionResetError, BrokenPipeError):
        pass
    try:
        status, _, body = await asyncio.wait_for(answer, 10)
        assert status == 413 and json.loads(body)["reason"] == "RequestEntityTooLarge"
    except (ConnectionResetError, BrokenPipeError):  # the 413 was sent; the reset after it came first here
        pass
    finally:
        writer.close()
    assert sent < 32 << 20 and rss() - before < 32 << 20


async def test_bodies_pipelined_behind_a_watch_are_read_only_so_far(server: APIServer) -> None:
    """64 pipelined 1 MiB bodies were read and held behind a watch that never ends: 64 MiB per connection."""
    big = b"{" + b" " * ((1 << 20) - 100) + b"}"
    post = (f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(big)}\r\n\r\n").encode() + big  # fmt: skip
    before = rss()
    writers = []
    try:
        for _ in range(4):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
            sock.connect(("127.0.0.1", server.port))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock)
            writers.append(writer)
            writer.write(request("GET", f"{SUBNETS}?watch=1"))
            assert (await read_head(reader))[0] == 200
            for _ in range(64):
                writer.write(post)
        await asyncio.sleep(0.5)  # let the server read what it will (a bound on memory, not a synchronisation)
        grown = rss() - before
        assert grown < 48 << 20, f"the server holds {grown >> 20} MiB for 4 connections"
    finally:
        for w in writers:
            w.transport.abort()


# --- the WebSocket upgrade ------------------------------------------------------------------------


def _upgrade(key: str = "dGhlIHNhbXBsZSBub25jZQ==", version: str = "13", upgrade: str = "websocket") -> bytes:
    return (f"GET {WS_PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n").encode()  # fmt: skip


@pytest.mark.parametrize(("data", "status"), [
    (_upgrade(key=""), 400),
    (_upgrade(key="c2hvcnQ="), 400),
    (_upgrade(upgrade="h2c"), 400),
    (_upgrade(version="12"), 426),
], ids=["no-key", "short-key", "not-websocket", "version-12"])  # fmt: skip
async def test_a_refused_websocket_handshake_is_a_status_and_the_connection_closes(
    server: APIServer, data: bytes, status: int
) -> None:
    """aiohttp answered these in plain text and kept the connection as its own HTTP server: every later request
    on it went to the multiplexer's handler, without the head timeout (a trickled head stayed open forever)."""
    reader, writer = await exchange(server.port, data + HEALTH)
    try:
        got, headers, body = await read_response(reader)
        assert got == status and json.loads(body)["kind"] == "Status"
        if status == 426:
            assert headers["sec-websocket-version"] == "13"
        assert await closed_within(reader, 5) == b""
    finally:
        writer.close()


async def test_a_multiplexer_refused_for_its_quota_closes_the_connection() -> None:
    async with running_apiserver(max_watchmux_connections_per_client=1) as server:
        first_r, first_w = await exchange(server.port, _upgrade())
        try:
            assert (await read_head(first_r))[0] == 101
            reader, writer = await exchange(server.port, _upgrade() + HEALTH)
            got, _, body = await read_response(reader)
            assert got == 429 and json.loads(body)["reason"] == "TooManyRequests"
            assert await closed_within(reader, 5) == b""
            writer.close()
        finally:
            first_w.close()


# --- RFC 9112 / 9110 details ----------------------------------------------------------------------


@pytest.mark.parametrize(("data", "status"), [
    (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /healthz\r\n\r\n", 505),
    (f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n".encode(), 501),
    (f"POST {SUBNETS} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n".encode(), 400),
], ids=["no-host", "two-hosts", "http-2.0", "http-0.9", "unknown-coding", "chunked-http-1.0"])  # fmt: skip
async def test_requests_rfc_9112_refuses_are_refused(server: APIServer, data: bytes, status: int) -> None:
    """RFC 9112 §3.2 (Host: exactly one in HTTP/1.1), §6.1 (an unknown transfer coding: 501; Transfer-Encoding
    in HTTP/1.0: faulty framing), RFC 9110 §15.6.6 (505); Go's net/http answers each the same way."""
    reader, writer = await exchange(server.port, data + HEALTH)
    try:
        got, _, body = await read_response(reader)
        assert got == status and json.loads(body)["kind"] == "Status"
        assert await closed_within(reader, 5) == b""
    finally:
        writer.close()


async def test_an_absolute_form_target_is_served(server: APIServer) -> None:
    """RFC 9112 §3.2.2: a server MUST accept the absolute form (it was 404 for every path)."""
    data = request("POST", f"http://x{SUBNETS}", subnet("abs", 83)) + request("GET", f"http://x:1{SUBNETS}/abs?x=1")
    reader, writer = await exchange(server.port, data + request("GET", "http://x"))
    try:
        assert (await read_response(reader))[0] == 201
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["metadata"]["name"] == "abs"
        assert (await read_response(reader))[0] == 404  # "/"
    finally:
        writer.close()


async def test_the_first_of_repeated_header_fields_counts(server: APIServer) -> None:
    """Go's Header.Get (so kube-apiserver) reads the first of two Content-Type fields; kos read the last."""
    body = json.dumps(subnet("dup", 84)).encode()
    head = (f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    reader, writer = await exchange(server.port, head + body)
    try:
        assert (await read_response(reader))[0] == 201
    finally:
        writer.close()


async def test_an_http_1_0_expectation_is_ignored(server: APIServer) -> None:
    """RFC 9110 §10.1.1: a server MUST ignore 100-continue in an HTTP/1.0 request."""
    req = request("POST", SUBNETS, subnet("old", 85), version="1.0", headers={"Expect": "100-continue"})
    reader, writer = await exchange(server.port, req)
    try:
        assert (await read_response(reader))[0] == 201
    finally:
        writer.close()


async def test_an_http_1_0_client_asking_for_keep_alive_is_told_so_and_kept() -> None:
    """RFC 9112 Appendix C.2.2: an HTTP/1.0 connection persists only if the response says `Connection: keep-alive`
    (ApacheBench `ab -k` needs it); without the request's keep-alive the connection closes after the answer."""
    async with running_apiserver() as server:
        keep = request("GET", SUBNETS, version="1.0", headers={"Connection": "keep-alive"})
        reader, writer = await exchange(server.port, keep + keep)
        try:
            for _ in range(2):
                status, headers, _ = await read_response(reader)
                assert status == 200 and headers.get("connection") == "keep-alive"
        finally:
            writer.close()
        reader, writer = await exchange(server.port, request("GET", SUBNETS, version="1.0"))
        try:
            status, headers, _ = await read_response(reader)
            assert status == 200 and headers.get("connection") == "close"
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()


async def test_a_watch_for_a_client_that_asked_to_close_says_connection_close(server: APIServer) -> None:
    """RFC 9112 §9.6: a server that will close the connection after a response sends `Connection: close` in it,
    a streamed (chunked) one included."""
    reader, writer = await exchange(server.port, request("GET", f"{SUBNETS}?watch=1", close=True))
    try:
        status, headers = await read_head(reader)
        assert status == 200 and headers.get("connection") == "close"
        assert headers.get("transfer-encoding") == "chunked"
    finally:
        writer.close()


# --- TLS ------------------------------------------------------------------------------------------


async def test_a_tls_handshake_that_never_completes_is_dropped_after_the_header_timeout() -> None:
    """asyncio's default handshake timeout is 60 s whatever the server's bounds; Go's ReadHeaderTimeout covers the
    handshake too."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    server = HTTPServer(_Failing(), "127.0.0.1", 0, ssl=ctx, limits=_short())
    await server.start()
    try:
        reader, writer = await exchange(server.port, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")  # half a hello
        assert await closed_within(reader, 10) is not None
        writer.close()
    finally:
        await server.stop(1.0)


def _short() -> Any:
    from kos.http.limits import HTTPLimits

    return HTTPLimits(header_timeout=0.5, idle_timeout=1.0)
