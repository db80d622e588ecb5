"""The watch multiplexer against hostile and slow clients (issue 10, items 4, 6 and 8).

A raw WebSocket over a plain socket, so a test can send any frame and stop
reading. Malformed frames get an `ERROR` record with a `Status` — on their id when
they name one, else on id -1 — and neither the connection nor its other watches
end; one watch that waits does not hold up the others or a cancel; and one
connection (or client) can hold only so many watches and so many queued bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from kos.apiserver import params, watchmux
from kos.apiserver.server import APIServer
from kos.testing.apiserver import cache_lagging, running_apiserver
from kos.testing.rawsocket import mux_records, read_head, ws_frame, ws_json, ws_message, ws_upgrade

P = "/apis/network.example.com/v1alpha1"
NAS = f"{P}/namespaces/mb/networkattachments"
Record = tuple[int, bytes]
BOUNDED: dict[str, Any] = {"watchmux_max_bytes": 8 << 20}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RawMux:
    """One multiplexer connection spoken by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seen: list[Record] = []

    @classmethod
    async def open(cls, server: APIServer, rcvbuf: int = 0) -> RawMux:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 24)
        writer.write(ws_upgrade())
        status, _ = await read_head(reader)
        assert status == 101
        return cls(reader, writer)

    def send(self, frame: Any) -> None:
        self.writer.write(frame if isinstance(frame, bytes) else ws_json(frame))

    async def until(self, done: Callable[[list[Record]], bool], timeout: float = 5.0) -> list[Record]:
        """Read records until `done(all seen so far)`; the records seen."""
        async with asyncio.timeout(timeout):
            while not done(self.seen):
                opcode, data = await ws_message(self.reader)
                assert opcode == 2, (opcode, data[:200])
                self.seen.extend(mux_records(data))
        return self.seen

    async def error_for(self, wid: int, timeout: float = 5.0) -> dict[str, Any]:
        """The Status of the next ERROR record on `wid` (consumed from what was seen)."""

        def found(recs: list[Record]) -> bool:
            return any(w == wid and b'"ERROR"' in d for w, d in recs)

        await self.until(found, timeout)
        i = next(i for i, (w, d) in enumerate(self.seen) if w == wid and b'"ERROR"' in d)
        status: dict[str, Any] = json.loads(self.seen.pop(i)[1])["object"]
        return status

    def close(self) -> None:
        self.writer.close()


def ended(wid: int) -> Callable[[list[Record]], bool]:
    return lambda recs: (wid, b"") in recs


def events(recs: list[Record], wid: int) -> list[tuple[str, str]]:
    out = []
    for w, d in recs:
        if w == wid and d:
            for line in d.splitlines():
                e = json.loads(line)
                if e["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    out.append((e["type"], e["object"]["metadata"]["name"]))
    return out


def na(name: str, pad: int = 0) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if pad:
        meta["annotations"] = {"pad": "x" * pad}
    return {"apiVersion": "network.example.com/v1alpha1", "kind": "NetworkAttachment", "metadata": meta,
            "spec": {"node": "n1", "subnet": "s1"}}  # fmt: skip


async def create(server: APIServer, *objs: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as s:
        for o in objs:
            async with s.post(server.url + NAS, json=o) as r:
                assert r.status == 201, await r.text()


async def healthy(server: APIServer) -> None:
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/healthz", timeout=timeout) as r:
        assert r.status == 200


def watch(wid: int, **kw: Any) -> dict[str, Any]:
    return {"op": "watch", "id": wid, "resource": "networkattachments", "namespace": "mb", **kw}


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with running_apiserver() as s:
        yield s


def open_watches(server: APIServer) -> float:
    value: float = server.metrics.watchers.labels("networkattachments")._value.get()
    return value


async def eventually(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


# --- malformed frames ---------------------------------------------------------------------------


async def test_malformed_frames_get_a_status_and_end_nothing_else(server: APIServer) -> None:
    """An invalid-JSON first frame, a cancel with id 1e400, JSON nested 100,000 deep or a 5,000-digit id each
    killed the connection with an unhandled exception."""
    await create(server, na("a"))
    mux = await RawMux.open(server)
    try:
        mux.send(ws_frame("{"))  # invalid JSON, and the first frame
        assert (await mux.error_for(-1))["code"] == 400
        mux.send(watch(1, resourceVersion="0"))
        await mux.until(lambda recs: events(recs, 1) == [("ADDED", "a")])
        deep = "[" * 100_000 + "]" * 100_000
        refused_on_no_id = [
            '{"op": "cancel", "id": 1e400}',
            '{"op": "watch", "id": ' + "7" * 5000 + ', "resource": "networkattachments"}',
            '{"op": "watch", "x": ' + deep + ', "id": 3}',
            '{"op": "watch", "id": 8, "resource": "networkattachments", "labelSelector": ' + deep + "}",
            '{"op": "cancel", "id": -4}',
            '{"op": "watch", "id": 1, "resource": "networkattachments"}',  # 1 is open: not its stream's business
            "[]",
            "",
        ]
        for frame in refused_on_no_id:
            mux.send(ws_frame(frame))
            status = await mux.error_for(-1)
            assert status["kind"] == "Status" and status["code"] == 400, (frame[:80], status)
        mux.send(ws_frame(b"\x00\x01", opcode=2))
        assert (await mux.error_for(-1))["code"] == 400
        refused_on_their_id = {
            9: '{"op": "nope", "id": 9}',
            10: '{"op": "watch", "id": 10, "resource": "networkattachments", "bogus": 1}',
            11: '{"op": "watch", "id": 11, "resource": "networkattachments", "labelSelector": "a in ("}',
            12: '{"op": "watch", "id": 12, "resource": "nonesuch"}',
            13: '{"op": "watch", "id": 13, "resource": "networkattachments", "timeoutSeconds": 1e400}',
            14: '{"op": "watch", "id": 14, "resource": "networkattachments", "resourceVersion": "' + "9" * 5000 + '"}',
            15: '{"op": "watch", "id": 15, "resource": "networkattachments", "timeoutSeconds": "' + "9" * 10 + 'x"}',
        }
        for wid, frame in refused_on_their_id.items():
            mux.send(ws_frame(frame))
            status = await mux.error_for(wid)
            assert status["code"] == 400 and status["message"], (wid, status)
            await mux.until(ended(wid))
        # the connection and watch 1 lived through all of it
        await create(server, na("b"))
        await mux.until(lambda recs: ("ADDED", "b") in events(recs, 1))
        assert (1, b"") not in mux.seen
    finally:
        mux.close()


# --- independence -------------------------------------------------------------------------------


async def test_a_waiting_watch_holds_up_neither_other_watches_nor_cancels(server: APIServer) -> None:
    """Watches were opened one at a time: one waiting for a future resourceVersion held up every other watch
    and cancel on the connection for 3 s."""
    assert server.cacher is not None
    await create(server, na("a"))
    future = str(server.cacher.revision + 1000)
    mux = await RawMux.open(server)
    try:
        with cache_lagging(server, int(future)):  # the store has it, the cache not yet: watches wait
            mux.send(watch(3, resourceVersion="0"))
            await mux.until(lambda recs: events(recs, 3) == [("ADDED", "a")])
            mux.send(watch(1, resourceVersion=future))  # waits 3 s, then Timeout
            mux.send(watch(2, resourceVersion="0"))
            mux.send({"op": "cancel", "id": 3})
            seen = await mux.until(lambda recs: events(recs, 2) == [("ADDED", "a")] and (3, b"") in recs, timeout=2)
            assert not [r for r in seen if r[0] == 1], "watch 1 answered before the others: they waited for it"
            assert (await mux.error_for(1, timeout=10))["code"] == 504
            # cancelling a waiting watch ends its wait at once
            mux.send(watch(4, resourceVersion=future))
            await eventually(lambda: server.cacher is not None and server.cacher.waiting == 1, 2)
            mux.send({"op": "cancel", "id": 4})
            await eventually(lambda: server.cacher is not None and server.cacher.waiting == 0, 2)
    finally:
        mux.close()


# --- bounds -------------------------------------------------------------------------------------


async def test_watches_per_connection_and_per_client_are_capped() -> None:
    async with running_apiserver(max_watches_per_connection=5, max_watches_per_client=8) as server:
        a, b = await RawMux.open(server), await RawMux.open(server)
        try:
            for wid in range(1, 7):
                a.send(watch(wid, resourceVersion="0"))
            status = await a.error_for(6)
            assert status["code"] == 429 and "connection" in status["message"]
            await eventually(lambda: open_watches(server) == 5)
            for wid in range(1, 5):
                b.send(watch(wid, resourceVersion="0"))
            status = await b.error_for(4)
            assert status["code"] == 429 and "client" in status["message"]
            assert status["details"]["retryAfterSeconds"] > 0
            async with aiohttp.ClientSession() as s, s.get(f"{server.url}{NAS}?watch=1") as r:
                assert r.status == 429 and r.headers["Retry-After"]
            a.send({"op": "cancel", "id": 1})
            await a.until(ended(1))
            b.send(watch(5, resourceVersion="0"))
            await eventually(lambda: open_watches(server) == 8)
        finally:
            a.close()
            b.close()
        await eventually(lambda: open_watches(server) == 0 and server.watch_quota.count("127.0.0.1") == 0)


async def test_selectors_are_bounded_and_not_kept_after_their_watches(
    server: APIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 distinct 1 MB selectors over the multiplexer held +300 MB after their watches ended."""
    monkeypatch.setattr(watchmux, "MAX_SELECTOR_BYTES", 64 << 10)
    cached, cached_bytes = len(params.SELECTORS), params.SELECTORS.bytes
    mux = await RawMux.open(server)
    try:
        for wid in range(1, 21):
            mux.send(watch(wid, labelSelector=f"k{wid}=" + "v" * 1_000_000))  # 1 MB; the frame is under 1 MiB
            status = await mux.error_for(wid)
            assert status["code"] == 400 and "too long" in status["message"]
        big = [",".join(f"k{i}x{w}=v" for i in range(1000))[:8000].rsplit(",", 1)[0] for w in range(9)]
        for wid, sel in enumerate(big, start=100):
            mux.send(watch(wid, labelSelector=sel, resourceVersion="0"))
        status = await mux.error_for(108)  # 8 × 8 KB fit in 64 KiB, the ninth does not
        assert status["code"] == 429 and "selectors" in status["message"]
        await eventually(lambda: open_watches(server) == 8)
        for wid in range(100, 108):
            mux.send({"op": "cancel", "id": wid})
        await eventually(lambda: open_watches(server) == 0)
        assert (len(params.SELECTORS), params.SELECTORS.bytes) == (cached, cached_bytes)
    finally:
        mux.close()


async def test_a_connection_that_never_reads_holds_bounded_memory() -> None:
    """5,000 subscriptions on one connection that never reads took +3 GB, and /healthz stalled."""
    async with running_apiserver(**BOUNDED) as server:
        await create(server, *(na(f"a{i}", pad=2000) for i in range(100)))  # each initial list: ~250 KB
        before = rss()
        mux = await RawMux.open(server, rcvbuf=4096)
        try:
            mux.writer.write(b"".join(ws_json(watch(wid, resourceVersion="0")) for wid in range(1, 5001)))
            await asyncio.sleep(1.0)  # real time is the point: what the server takes in meanwhile must stay bounded
            await healthy(server)
            async with aiohttp.ClientSession() as s:  # events keep coming for the watches that are open
                for i in range(20):
                    async with s.patch(f"{server.url}{NAS}/a{i}", json={"metadata": {"labels": {"x": "1"}}},
                                       headers={"Content-Type": "application/merge-patch+json"}) as r:  # fmt: skip
                        assert r.status == 200
            await asyncio.sleep(0.5)  # real time is the point: the events pile up for a client that reads nothing
            await healthy(server)
            grew = rss() - before
            assert grew < 150 << 20, f"the server grew by {grew >> 20} MiB for a client that reads nothing"
            assert open_watches(server) < 5000
        finally:
            mux.close()
        await eventually(lambda: open_watches(server) == 0 and server.watch_quota.count("127.0.0.1") == 0)


async def test_a_client_that_stops_reading_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchmux, "HEARTBEAT", 0.4)
    async with running_apiserver(watchmux_max_bytes=8 << 20, idle_timeout=1.5) as server:
        await create(server, *(na(f"a{i}", pad=2000) for i in range(100)))
        mux = await RawMux.open(server, rcvbuf=4096)
        try:
            mux.writer.write(b"".join(ws_json(watch(wid, resourceVersion="0")) for wid in range(1, 200)))
            await eventually(lambda: open_watches(server) > 0)
            await eventually(lambda: not server.watchmux or not server.watchmux.connections, 10)
            await eventually(lambda: open_watches(server) == 0)
        finally:
            mux.close()
            with contextlib.suppress(ConnectionError):
                await mux.writer.wait_closed()


async def test_connections_per_client_are_capped() -> None:
    """Each multiplexer connection may hold its own selectors and queued output: how many one client may open is
    bounded too (429 before the upgrade; a closed one makes room)."""
    async with running_apiserver(max_watchmux_connections_per_client=2) as s:
        first, second = await RawMux.open(s), await RawMux.open(s)
        sock = socket.socket()
        sock.connect(("127.0.0.1", s.port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(ws_upgrade())
        status, _ = await read_head(reader)
        assert status == 429
        writer.close()
        first.writer.close()
        third: RawMux | None = None
        for _ in range(100):  # the server notices the closed connection
            await asyncio.sleep(0.02)
            with contextlib.suppress(AssertionError):
                third = await RawMux.open(s)
                break
        assert third is not None
        for m in (second, third):
            m.writer.close()


async def test_a_client_gone_while_its_pings_are_answered_is_a_quiet_disconnect(
    server: APIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An apiserver resumed after SIGSTOP answered the pings its gone clients had queued and logged aiohttp's
    "Error handling request" traceback (ConnectionResetError: Cannot write to closing transport) for each."""
    for _ in range(5):
        mux = await RawMux.open(server)
        mux.send(watch(1))
        sock = mux.writer.get_extra_info("socket")
        mux.send(b"".join(ws_frame(b"p", opcode=9) for _ in range(2000)))
        await mux.writer.drain()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        mux.writer.transport.abort()
    await eventually(lambda: open_watches(server) == 0)
    await healthy(server)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [], [r.getMessage() for r in errors]
