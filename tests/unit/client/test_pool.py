"""`HTTPPool` against local socket servers: keep-alive retry, watch streams, TLS with a trustme CA.

What the mock transport cannot reach: the bytes on a socket. The servers here are a few
lines of asyncio that answer with canned HTTP; TLS is asyncio's, with certificates from a
throwaway CA (trustme).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme

from kos.api import codec
from kos.api.errors import ServiceUnavailable
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.client.rest import Client
from kos.http.clientpool import HTTPPool
from kos.http.clientresponse import ConnectionFailed, StreamRefused
from kos.testing.listwatch import with_rv
from kos.testing.transport import event


class _Reader:
    """What a handler reads with: `await r.head()` is the next request head (recorded), b"" at EOF."""

    def __init__(self, reading: Callable[[], Awaitable[bytes]]) -> None:
        self.head = reading


Handler = Callable[[_Reader, asyncio.StreamWriter, int], Awaitable[None]]
"""(reader, writer, connection number from 0)."""


def ok(body: bytes = b"{}", *, close: bool = False) -> bytes:
    conn = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%bContent-Length: %d\r\n\r\n%b" % (
        conn, len(body), body)  # fmt: skip


def chunked(*chunks: bytes, status: bytes = b"200 OK") -> bytes:
    body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
    return b"HTTP/1.1 %b\r\nTransfer-Encoding: chunked\r\n\r\n%b0\r\n\r\n" % (status, body)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """One request head (the tests send no bodies here); b"" at EOF."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        return await reader.readuntil(b"\r\n\r\n")
    return b""


@contextlib.asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server on 127.0.0.1: (its port, the request heads it read, in order)."""
    heads: list[bytes] = []
    count = 0

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        n, count = count, count + 1

        async def reading() -> bytes:
            head = await read_head(reader)
            if head:
                heads.append(head)
            return head

        try:
            await handler(_Reader(reading), writer, n)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()


# --- keep-alive ---------------------------------------------------------------------------------


async def test_a_stale_keep_alive_connection_is_retried_once_on_a_fresh_one() -> None:
    """The server closes an idle connection just as the next request goes out on it: the request never
    reached a handler (no byte of an answer came back), so it is sent again on a new connection."""

    async def handler(r: _Reader, w: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            await r.head()
            w.write(ok(b'{"n":1}'))
            await r.head()  # the second request on the kept-alive connection: dropped unanswered
            return
        await r.head()
        w.write(ok(b'{"n":2}'))
        await r.head()

    async with serving(handler) as (port, heads):
        pool = HTTPPool(f"http://127.0.0.1:{port}")
        try:
            assert (await pool.request("GET", "/a")).body == b'{"n":1}'
            second = await pool.request("POST", "/b", body=b"{}")
            assert (second.status, second.body) == (200, b'{"n":2}')
            assert [h.split(b" ")[:2] for h in heads] == [[b"GET", b"/a"], [b"POST", b"/b"], [b"POST", b"/b"]]
        finally:
            await pool.close()


async def test_a_fresh_connection_closed_unanswered_is_not_retried() -> None:
    """On a new connection the server may have seen the request: a POST is not sent twice."""

    async def handler(r: _Reader, w: asyncio.StreamWriter, n: int) -> None:
        await r.head()

    async with serving(handler) as (port, heads):
        pool = HTTPPool(f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(ConnectionFailed) as e:
                await pool.request("POST", "/b", body=b"{}")
            assert not e.value.retryable
            assert len(heads) == 1
        finally:
            await pool.close()


# --- watch streams ------------------------------------------------------------------------------


def na(name: str, rv: int) -> NetworkAttachment:
    return with_rv(NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns"),
                                     spec=NetworkAttachmentSpec(node="n1")), rv)  # fmt: skip


async def test_a_stream_cuts_chunks_into_lines_across_chunk_boundaries() -> None:
    lines = [event("ADDED", na(f"a{i}", i + 1)) for i in range(5)]
    body = b"\n".join(lines) + b"\n\n"  # a keep-alive blank line too
    cuts = [0, 7, 8, len(lines[0]) + 1, 300, len(body) - 1, len(body)]

    async def handler(r: _Reader, w: asyncio.StreamWriter, n: int) -> None:
        await r.head()
        w.write(chunked(*(body[a:b] for a, b in itertools.pairwise(cuts))))
        await w.drain()

    async with serving(handler) as (port, heads):
        pool = HTTPPool(f"http://127.0.0.1:{port}")
        got = [ln async for batch in pool.stream("/w", query={"watch": "1"}) for ln in batch]
        assert got == lines
        assert heads[0].startswith(b"GET /w?watch=1 HTTP/1.1\r\n")
        await pool.close()


async def test_a_refused_stream_carries_the_whole_answer() -> None:
    async def handler(r: _Reader, w: asyncio.StreamWriter, n: int) -> None:
        await r.head()
        w.write(chunked(b'{"kind":"Status",', b'"code":410}', status=b"410 Gone"))

    async with serving(handler) as (port, _):
        pool = HTTPPool(f"http://127.0.0.1:{port}")
        with pytest.raises(StreamRefused) as e:
            async for _ in pool.stream("/w"):
                pass
        assert (e.value.response.status, e.value.response.body) == (410, b'{"kind":"Status","code":410}')


async def test_a_stream_broken_mid_way_raises_connection_failed() -> None:
    async def handler(r: _Reader, w: asyncio.StreamWriter, n: int) -> None:
        await r.head()
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        line = event("ADDED", na("a", 1)) + b"\n"
        w.write(b"%x\r\n%b\r\n" % (len(line), line))
        await w.drain()

    async with serving(handler) as (port, _):
        pool = HTTPPool(f"http://127.0.0.1:{port}")
        got: list[bytes] = []
        with pytest.raises(ConnectionFailed, match="watch connection closed"):
            async for batch in pool.stream("/w"):
                got.extend(batch)
        assert len(got) == 1


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def api(r: _Reader, w: asyncio.StreamWriter, n: int) -> None:
    """A tiny apiserver: GET answers one NA; a watch answers two events and ends."""
    while head := await r.head():
        if b"watch=1" in head.split(b"\r\n", 1)[0]:
            w.write(chunked(event("ADDED", na("a", 1)) + b"\n", event("MODIFIED", na("a", 2)) + b"\n"))
        else:
            w.write(ok(codec.encode(na("a", 1))))
        await w.drain()


async def test_the_client_over_tls_verifies_the_server_and_carries_calls_and_watches(ca: trustme.CA) -> None:
    async with serving(api, server_context(ca, "127.0.0.1")) as (port, heads):
        async with Client(f"https://127.0.0.1:{port}", ssl=client_context(ca)) as c:
            got = await c.get(NetworkAttachment, "ns", "a")
            events = [(ev.type, ev.resource_version) async for ev in c.watch(NetworkAttachment, "ns")]
        assert got.metadata.name == "a"
        assert events == [("ADDED", "1"), ("MODIFIED", "2")]
        assert len(heads) == 2


async def test_a_server_certificate_from_another_ca_fails_clearly(ca: trustme.CA) -> None:
    other = trustme.CA()
    async with serving(api, server_context(other, "127.0.0.1")) as (port, heads):
        pool = HTTPPool(f"https://127.0.0.1:{port}", ssl=client_context(ca))
        with pytest.raises(ConnectionFailed, match="certificate did not verify: unable to get local issuer"):
            await pool.request("GET", "/a")
        async with Client(f"https://127.0.0.1:{port}", ssl=client_context(ca)) as c:
            with pytest.raises(ServiceUnavailable, match="certificate did not verify"):
                await c.get(NetworkAttachment, "ns", "a")
            with pytest.raises(ServiceUnavailable, match="certificate did not verify"):
                async for _ in c.watch(NetworkAttachment, "ns"):
                    pass
        assert heads == []  # nothing was sent before the handshake failed


async def test_a_certificate_for_another_host_fails(ca: trustme.CA) -> None:
    async with serving(api, server_context(ca, "other.example")) as (port, heads):
        pool = HTTPPool(f"https://127.0.0.1:{port}", ssl=client_context(ca))
        with pytest.raises(ConnectionFailed, match="certificate did not verify: IP address mismatch"):
            await pool.request("GET", "/a")
        assert heads == []


def test_urls_say_whether_tls_is_used(ca: trustme.CA) -> None:
    with pytest.raises(ValueError, match="use https://"):
        HTTPPool("http://127.0.0.1:1", ssl=client_context(ca))
    with pytest.raises(ValueError, match="not 'ftp'"):
        HTTPPool("ftp://127.0.0.1:1")
    default = HTTPPool("https://example.com")
    assert default.ssl is not None and default.ssl.verify_mode == ssl.CERT_REQUIRED and default.ssl.check_hostname
    assert default.port == 443


async def test_closing_the_pool_ends_its_open_watches() -> None:
    started = asyncio.Event()

    async def handler(r: _Reader, w: asyncio.StreamWriter, n: int) -> None:
        await r.head()
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await w.drain()
        started.set()
        await r.head()  # until the client closes

    async with serving(handler) as (port, _):
        async with Client(f"http://127.0.0.1:{port}") as c:

            async def follow() -> None:
                async for _ in c.watch(NetworkAttachment, "ns"):
                    pass

            task = asyncio.create_task(follow())
            await asyncio.wait_for(started.wait(), 5)
        with pytest.raises(ServiceUnavailable, match="watch of networkattachments interrupted"):
            await asyncio.wait_for(task, 5)


def sockets_to(port: int) -> int:
    """How many of this process's TCP sockets have 127.0.0.1:`port` as their peer (Linux /proc): the client
    side of connections to a server of this test (the server's own sockets have it as their local port)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for r in rows if int(r[2].rsplit(":", 1)[1], 16) == port and r[9] in inodes)


async def test_closing_the_pool_drops_a_tls_watch_connection_still_closing(ca: trustme.CA) -> None:
    """A watch ended by its reader closes its TLS connection gracefully: close_notify sent, the server's awaited
    (asyncio: up to 30 s). A server that does not answer (an etcd gateway whose handler has not yet noticed)
    leaves the connection closing; the pool's close must still drop it before returning, or the transport
    outlives the pool and, at the loop's close, leaks (uvloop: "unclosed resource", EBUSY)."""
    release = asyncio.Event()

    async def handler(r: _Reader, w: asyncio.StreamWriter, n: int) -> None:
        await r.head()
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"2\r\na\n\r\n")
        await w.drain()
        w.transport.pause_reading()  # the client's close_notify is never read, so never answered
        await release.wait()

    async with serving(handler, server_context(ca, "127.0.0.1")) as (port, _):
        pool = HTTPPool(f"https://127.0.0.1:{port}", ssl=client_context(ca))
        watch = pool.stream("/w")
        assert await anext(watch) == [b"a"]
        await watch.aclose()
        assert sockets_to(port) == 1  # closing: waiting for the server's close_notify
        await pool.close()
        assert sockets_to(port) == 0
        with pytest.raises(ConnectionFailed, match="is closed") as e:
            await pool.request("GET", "/a")
        assert e.value.retryable  # nothing was sent
        release.set()
