"""Inputs that exhausted or stalled the HTTP front ends (issue 10, item 4), each with its right answer.

Every test sends the adversarial input over a raw socket, requires a prompt 4xx
(431 for a head past its bounds, as Go's net/http and so kube-apiserver answer) or
a closed connection, and that other clients are served meanwhile; where memory
is at stake, it bounds the server's memory growth (RSS of this process, which
runs the server) well below what the old code took. Every request on a
connection — calls, probes, watches — meets the same bounds (one HTTP layer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kos.apiserver.server import APIServer
from kos.testing.apiserver import cache_lagging, running_apiserver
from kos.testing.rawsocket import read_response, request
from kos.testing.wait import eventually

P = "/apis/network.example.com/v1alpha1"
NAS = f"{P}/namespaces/hb/networkattachments"


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def healthy(server: APIServer) -> None:
    """Another client is served (within a liveness bound, not a measurement)."""
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
            assert r.status == 200
        async with s.get(f"{server.url}{NAS}?limit=1", timeout=aiohttp.ClientTimeout(total=2)) as r:
            assert r.status == 200


async def connect(server: APIServer, rcvbuf: int = 0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    return await asyncio.open_connection(sock=sock)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server ends the connection within `within` seconds (reading whatever it sends)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def stream_until_answered(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, head: bytes, filler: bytes, most: int
) -> tuple[int, int]:
    """Send `head`, then `filler` again and again (up to `most` bytes) until the server answers; (status, sent)."""
    answer: asyncio.Task[tuple[int, dict[str, str], bytes]] = asyncio.create_task(read_response(reader, 30))
    sent = 0
    try:
        writer.write(head)
        while sent < most and not answer.done():
            writer.write(filler)
            sent += len(filler)
            await writer.drain()
            await asyncio.sleep(0)
    except (ConnectionResetError, BrokenPipeError):
        pass
    status, _, body = await asyncio.wait_for(answer, 10)
    if status != 200:
        assert json.loads(body)["kind"] == "Status"
    return status, sent


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with running_apiserver() as s:
        yield s


@pytest.fixture
async def impatient() -> AsyncIterator[APIServer]:
    """A server with short time bounds (the defaults are kube-apiserver's 32 s and 90 s)."""
    async with running_apiserver(header_timeout=0.5, idle_timeout=1.0) as s:
        yield s


# --- sizes ------------------------------------------------------------------------------------


async def test_a_header_line_that_never_ends_is_431_after_a_bounded_amount(server: APIServer) -> None:
    """It was read to the end — 48 MiB and counting — and never answered."""
    reader, writer = await connect(server)
    try:
        before = rss()
        status, sent = await stream_until_answered(
            writer, reader, f"GET {NAS} HTTP/1.1\r\nHost: x\r\nX-Endless: ".encode(), b"a" * 65536, 64 << 20
        )
        assert status == 431
        assert sent < 8 << 20, f"the server read {sent} bytes of one header line"
        assert rss() - before < 64 << 20
        await healthy(server)
    finally:
        writer.close()


async def test_a_request_line_that_never_ends_is_431(server: APIServer) -> None:
    reader, writer = await connect(server)
    try:
        status, sent = await stream_until_answered(writer, reader, f"GET {NAS}?x=".encode(), b"a" * 65536, 64 << 20)
        assert status == 431 and sent < 8 << 20
    finally:
        writer.close()


@pytest.mark.parametrize("repeats", [129, 10_000])
async def test_one_header_repeated_is_431(server: APIServer, repeats: int) -> None:
    """4.5 million copies of one header were accepted, and the request answered 200."""
    reader, writer = await connect(server)
    try:
        writer.write(f"GET {NAS} HTTP/1.1\r\nHost: x\r\n".encode() + b"X-A: b\r\n" * repeats + b"\r\n")
        status, _, body = await read_response(reader)
        assert status == 431 and json.loads(body)["reason"] == "RequestHeaderFieldsTooLarge"
        assert "too many request headers" in json.loads(body)["message"]
        assert await closed_by_server(reader, 5)
    finally:
        writer.close()


async def test_headers_at_the_bounds_are_served(server: APIServer) -> None:
    reader, writer = await connect(server)
    try:
        headers = {f"X-H{i}": "v" for i in range(120)} | {"X-Long": "a" * 8000}
        writer.write(request("GET", f"{NAS}?limit=1", headers=headers))
        assert (await read_response(reader))[0] == 200
    finally:
        writer.close()


async def test_after_a_probe_the_connection_has_the_same_bounds(server: APIServer) -> None:
    """After /healthz (once handed to aiohttp, now served by the same layer) the same heads are refused."""
    for rest in (b"X-A: b\r\n" * 200 + b"\r\n", b"X-Long: " + b"a" * 9000 + b"\r\n\r\n"):
        reader, writer = await connect(server)
        try:
            writer.write(request("GET", "/healthz"))
            assert (await read_response(reader))[0] == 200
            writer.write(f"GET {NAS} HTTP/1.1\r\nHost: x\r\n".encode() + rest)
            status, _, _ = await read_response(reader)
            assert status in (400, 431)
            assert await closed_by_server(reader, 5)
        finally:
            writer.close()


# --- time -------------------------------------------------------------------------------------


async def test_half_requests_are_dropped_after_the_header_timeout(impatient: APIServer) -> None:
    """Idle half-requests exhausted file descriptors: nothing ever closed them."""
    conns = [await connect(impatient) for _ in range(50)]
    try:
        for i, (_, writer) in enumerate(conns):
            writer.write(f"GET {NAS} HTTP/1.1\r\nHost: x\r\n".encode() if i % 2 else b"")
        await healthy(impatient)
        closed = await asyncio.gather(*(closed_by_server(r, 5) for r, _ in conns))
        assert all(closed), f"{closed.count(False)} of 50 half-requests still held"
    finally:
        for _, writer in conns:
            writer.close()


async def test_a_stalled_body_and_an_idle_connection_are_dropped(impatient: APIServer) -> None:
    reader, writer = await connect(impatient)
    try:
        writer.write(f"POST {NAS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100\r\n\r\n{\"a\":".encode())  # fmt: skip
        assert await closed_by_server(reader, 6)
    finally:
        writer.close()
    reader, writer = await connect(impatient)
    try:
        writer.write(request("GET", f"{NAS}?limit=1"))
        assert (await read_response(reader))[0] == 200
        writer.write(request("GET", f"{NAS}?limit=1"))  # a keep-alive connection in use stays open
        assert (await read_response(reader))[0] == 200
        assert await closed_by_server(reader, 6)
    finally:
        writer.close()


async def test_after_a_probe_idle_and_half_requests_are_dropped(impatient: APIServer) -> None:
    for rest in (b"", f"GET {NAS} HTTP/1.1\r\nHost: x\r\n".encode()):
        reader, writer = await connect(impatient)
        try:
            writer.write(request("GET", "/healthz"))
            assert (await read_response(reader))[0] == 200
            writer.write(rest)
            assert await closed_by_server(reader, 6)
        finally:
            writer.close()


# --- pipelining -------------------------------------------------------------------------------


async def _fill(server: APIServer, count: int, size: int) -> int:
    """`count` NAs of about `size` bytes each; the list's size."""
    async with aiohttp.ClientSession() as s:
        for i in range(count):
            na = {"apiVersion": "network.example.com/v1alpha1", "kind": "NetworkAttachment",
                  "metadata": {"name": f"na{i}", "annotations": {"pad": "x" * size}},
                  "spec": {"node": "n1", "subnet": "s1"}}  # fmt: skip
            async with s.post(server.url + NAS, json=na) as r:
                assert r.status == 201, await r.text()
        async with s.get(server.url + NAS) as r:
            return len(await r.read())


def served_lists(server: APIServer) -> float:
    value: float = server.metrics.requests.labels("list", "networkattachments", "", "200")._value.get()
    return value


async def test_pipelined_answers_wait_for_a_client_that_does_not_read(server: APIServer) -> None:
    """400 pipelined GETs of a 0.8 MB list on a socket that never reads took +308 MB: every answer was queued."""
    size = await _fill(server, 200, 4000)
    assert size > 800_000
    _reader, writer = await connect(server, rcvbuf=4096)
    try:
        base = served_lists(server)
        before = rss()
        writer.write(request("GET", NAS) * 400)
        last, stable_since = -1.0, time.monotonic()
        while time.monotonic() - stable_since < 1.0:  # until the server stops answering
            await asyncio.sleep(0.1)  # real time is the point: "stopped" is a second without progress
            n = served_lists(server)
            if n != last:
                last, stable_since = n, time.monotonic()
        await healthy(server)
        assert last - base <= 20, f"{last - base:.0f} of 400 lists were answered to a client that reads nothing"
        assert rss() - before < 100 << 20
    finally:
        writer.close()


async def test_a_client_that_never_reads_its_answers_is_dropped(impatient: APIServer) -> None:
    await _fill(impatient, 100, 4000)
    reader, writer = await connect(impatient, rcvbuf=4096)
    try:
        writer.write(request("GET", NAS) * 50)
        await asyncio.sleep(0.3)  # real time is the point: the client reads nothing for a while (idle bound 1 s)
        assert await closed_by_server(reader, 8)  # reading now drains what the kernel held, then EOF or reset
    finally:
        writer.close()


async def test_pipelined_requests_are_read_ahead_only_so_far(server: APIServer) -> None:
    """A flood of pipelined calls is parsed a bounded distance ahead of its answers, then reading pauses."""
    await _fill(server, 200, 4000)
    _reader, writer = await connect(server, rcvbuf=4096)
    try:
        flood = request("GET", NAS) * 500_000  # ~48 MB: more than the kernel's socket buffers hold
        writer.write(flood)
        before = rss()  # the server has read nothing yet: it runs on this loop, which has not turned
        await asyncio.sleep(1.0)  # real time is the point: a second in which the server must not read it all
        assert writer.transport.get_write_buffer_size() > 0  # the server stopped reading: our side holds the rest
        await healthy(server)
        assert rss() - before < 100 << 20
    finally:
        writer.close()


# --- waiters ----------------------------------------------------------------------------------


async def test_far_future_resource_versions_leave_no_waiter_behind(server: APIServer) -> None:
    """300 GETs with a far-future resourceVersion each left a waiter behind forever after their 504."""
    assert server.cacher is not None
    far = server.cacher.revision + 1_000_000
    async with aiohttp.ClientSession() as s:

        async def get(i: int) -> int:
            path = f"{NAS}/nope{i}" if i % 2 else NAS
            async with s.get(f"{server.url}{path}?resourceVersion={far + i}") as r:
                return r.status

        statuses = await asyncio.gather(*(get(i) for i in range(300)))
    assert set(statuses) == {504}
    assert server.cacher.waiting == 0
    assert server.cacher.held_waiters <= 16
    # a caller that goes away mid-wait leaves nothing either (a revision the store has and the cache has
    # not applied yet is waited for; one the store never reached is refused at once, as above)
    with cache_lagging(server, far):
        _reader, writer = await connect(server)
        writer.write(request("GET", f"{NAS}?resourceVersion={far}"))
        await writer.drain()
        for _ in range(100):
            if server.cacher.waiting:
                break
            await asyncio.sleep(0.01)
        assert server.cacher.waiting == 1
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        for _ in range(200):
            if not server.cacher.waiting:
                break
            await asyncio.sleep(0.01)
        assert server.cacher.waiting == 0


async def test_a_client_that_never_reads_is_dropped_with_a_probe_pending(impatient: APIServer) -> None:
    """Calls pipelined before a health check: their answers are timed while they wait for a client that does
    not read (the connection would otherwise hold a descriptor forever)."""
    assert impatient.http is not None
    http = impatient.http
    await _fill(impatient, 40, 200_000)  # 8 MB lists: more than the kernel's buffers hold
    _reader, writer = await connect(impatient, rcvbuf=4096)
    try:
        writer.write(request("GET", NAS) * 3 + request("GET", "/healthz"))

        def waiting() -> list[Any]:
            return [p for p in http.connections if p.transport is not None and p._queue]

        await eventually(waiting, timeout=8)
        pending = waiting()
        assert len(pending) == 1
        await eventually(lambda: pending[0]._dead and pending[0].transport is None, timeout=8)
    finally:
        writer.close()


async def test_shutdown_answers_a_call_in_flight() -> None:
    """A call waiting for a revision the cache has not reached when the server stops gets 503, not a cut
    connection."""
    async with running_apiserver(check_cache=False) as s:  # stopped by the test itself: nothing left to check
        rev = await s.store.current_revision()
        with cache_lagging(s, rev + 5):
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(request("GET", f"{NAS}?resourceVersion={rev + 5}"))
            await writer.drain()
            assert s.cacher is not None
            await eventually(lambda: s.cacher is not None and s.cacher.waiting == 1, timeout=5)  # the call waits
            stopping = asyncio.create_task(s.stop())
            status, _, body = await read_response(reader, 5)
            await stopping
            writer.close()
    assert status == 503 and json.loads(body)["reason"] == "ServiceUnavailable"
