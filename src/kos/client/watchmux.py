"""The client side of multiplexed watches: many watches of one Client over one WebSocket.

See `kos.apiserver.watchmux` for the protocol. `Client(watch_mux=True)` routes
its watches here; each yields exactly the event lines an HTTP watch would, so
reflectors and informers do not know the difference. If the connection drops,
every open watch fails with ServiceUnavailable and its reflector resumes from
its last revision on a new connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec

from kos.api.errors import ServiceUnavailable

log = logging.getLogger(__name__)

_END = b""


class _Stream:
    __slots__ = ("chunks", "error", "wakeup")

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.wakeup = asyncio.Event()
        self.error: BaseException | None = None


class WatchMux:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connecting: asyncio.Lock | None = None
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._outbox: collections.deque[str] = collections.deque()
        self._sender: asyncio.Task[None] | None = None
        self._send_wakeup = asyncio.Event()

    async def _connection(self) -> aiohttp.ClientWebSocketResponse:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._ws is None or self._ws.closed:
                try:
                    self._ws = await self.session.ws_connect(self.url, max_msg_size=0, heartbeat=30.0, compress=0)
                except (aiohttp.ClientError, OSError) as e:
                    raise ServiceUnavailable(f"cannot open the watch connection to {self.url}: {e}") from e
                self._reader = asyncio.create_task(self._read(self._ws), name="watchmux-reader")
                self._sender = asyncio.create_task(self._send(self._ws), name="watchmux-sender")
            return self._ws

    def _post(self, msg: dict[str, Any]) -> None:
        self._outbox.append(msgspec.json.encode(msg).decode())
        self._send_wakeup.set()

    async def _send(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await self._send_wakeup.wait()
            self._send_wakeup.clear()
            while self._outbox and not ws.closed:
                try:
                    await ws.send_str(self._outbox.popleft())
                except (aiohttp.ClientError, ConnectionError, RuntimeError):
                    return

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        error: BaseException = ServiceUnavailable("the watch connection closed")
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                self._dispatch(msg.data)
        except Exception as e:  # any failure ends every watch on this connection
            error = ServiceUnavailable(f"the watch connection failed: {e}")
        for s in self._streams.values():
            s.error = error
            s.wakeup.set()
        self._streams.clear()

    def _dispatch(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            nl = data.index(b"\n", pos)
            wid_s, _, size_s = data[pos:nl].partition(b" ")
            size = int(size_s)
            body = data[nl + 1 : nl + 1 + size]
            pos = nl + 1 + size
            s = self._streams.get(int(wid_s))
            if s is None:
                if wid_s == b"-1" and size:  # the server refused a frame that named no watch it could answer on
                    log.warning("the watch multiplexer refused a request: %s", body[:1000].decode(errors="replace"))
                continue
            s.chunks.append(body if size else _END)
            s.wakeup.set()

    async def lines(self, request: dict[str, Any]) -> AsyncIterator[bytes]:
        """The event lines of one watch, until the server ends it."""
        await self._connection()
        wid = next(self._ids)
        stream = self._streams[wid] = _Stream()
        self._post({"op": "watch", "id": wid, **request})
        ended = False
        try:
            while True:
                while not stream.chunks:
                    if stream.error is not None:
                        raise stream.error
                    stream.wakeup.clear()
                    await stream.wakeup.wait()
                chunk = stream.chunks.popleft()
                if chunk is _END:
                    ended = True
                    return
                for line in chunk.splitlines():
                    if line:
                        yield line
        finally:
            self._streams.pop(wid, None)
            if not ended and stream.error is None:
                self._post({"op": "cancel", "id": wid})

    async def close(self) -> None:
        for t in (self._reader, self._sender):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        if self._ws is not None:
            await self._ws.close()
