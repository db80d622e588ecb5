"""The client side of multiplexed watches: many watches of one Client over one WebSocket.

See `kos.apiserver.watchmux` for the protocol. `WatchMux` is a `Transport` that wraps
another one (`Client(watch_mux=True)` wraps its `HTTPPool` in it): calls go to the inner
transport unchanged; each watch of a resource is sent as a frame on the shared
WebSocket, and yields exactly the event lines an HTTP watch would, so reflectors and
informers do not know the difference (a stream that names no resource collection goes
to the inner transport). If the connection drops, every open watch fails with
`ConnectionFailed` and its reflector resumes from its last revision on a new connection.

The WebSocket is aiohttp's client (RFC 6455 framing, masking, ping/pong, close
handshake): the one place the client keeps aiohttp. Over https it uses the same
`ssl.SSLContext` as the inner transport (wss://, certificate and host name verified, the
client certificate presented) and sends the same default `headers` (a bearer token) on its
upgrade request: every watch on the WebSocket runs as that one identity, so a stream's own
`headers` (another identity's) are not sent for a multiplexed watch. `before_connect` is called
before each connection, as the pool's. A silent server is noticed by the WebSocket's ping (`HEARTBEAT`) and
TCP keepalive (kos.http.clientkeepalive).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import ssl as ssl_
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import aiohttp
import msgspec

from kos.api import watchframe
from kos.api.types import API_VERSION
from kos.client.transport import Transport
from kos.http.clientkeepalive import keep_alive
from kos.http.clientresponse import ConnectionFailed, Response
from kos.util.log import get_logger

log = get_logger(__name__)

HEARTBEAT = 2.0
"""Seconds between WebSocket pings; a pong missing for half of it ends the connection and every watch on it
(a silent server noticed within ~3 s, below issue 13's 5 s bound; kos.http.clientkeepalive does the same for
HTTP connections). The pings are two small frames per interval per client."""
_END = b""
_PREFIX = f"/apis/{API_VERSION}/"


def _watch_target(path: str) -> tuple[str, str | None] | None:
    """(resource, namespace or None) of a collection path, or None for any other path."""
    if not path.startswith(_PREFIX):
        return None
    parts = path[len(_PREFIX) :].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[0] == "namespaces" and parts[1] and parts[2]:
        return parts[2], parts[1]
    return None


class _Stream:
    __slots__ = ("chunks", "error", "wakeup")

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.wakeup = asyncio.Event()
        self.error: BaseException | None = None


class WatchMux:
    """A `Transport`: `inner`'s calls, and watches over one WebSocket to `url` (ws:// or wss://)."""

    def __init__(
        self, inner: Transport, url: str, *, ssl: ssl_.SSLContext | None = None, user_agent: str = "kos",
        headers: Mapping[str, str] | None = None, before_connect: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        self.inner = inner
        self._before_connect = before_connect
        self.url = url
        self.ssl = ssl
        self.user_agent = user_agent
        self._headers = headers or {}
        """Sent with each WebSocket handshake, read then (a `tokenFile` token changes: kos.pki.bearer)."""
        self._session: aiohttp.ClientSession | None = None
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
                if self._session is None:
                    self._session = aiohttp.ClientSession(headers={"User-Agent": self.user_agent})
                if self._before_connect is not None:
                    self._before_connect()
                try:
                    self._ws = await self._session.ws_connect(
                        self.url, max_msg_size=0, heartbeat=HEARTBEAT, compress=0,
                        ssl=self.ssl if self.ssl else True, headers=dict(self._headers),
                    )  # fmt: skip
                except (aiohttp.ClientError, OSError) as e:  # a watch applies nothing: safe on another server
                    raise ConnectionFailed(
                        f"cannot open the watch connection to {self.url}: {e}", retryable=True
                    ) from e
                keep_alive(self._ws)
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
        error: BaseException = ConnectionFailed("the watch connection closed")
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                self._dispatch(msg.data)
        except Exception as e:  # any failure ends every watch on this connection
            error = ConnectionFailed(f"the watch connection failed: {e}")
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
                    log.warning("the watch multiplexer refused a request", answer=body[:1000].decode(errors="replace"))
                continue
            s.chunks.append(body if size else _END)
            s.wakeup.set()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Response:
        """A call, through the inner transport."""
        return await self.inner.request(method, path, query=query, body=body, headers=headers, timeout=timeout)

    async def stream(
        self, path: str, *, query: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[list[bytes], None]:
        """The event lines of one watch, in batches (one per record), until the server ends it."""
        target = _watch_target(path)
        if target is None:
            async for lines in self.inner.stream(path, query=query, headers=headers):
                yield lines
            return
        request: dict[str, Any] = {k: v for k, v in (query or {}).items() if k != "watch"}
        request["resource"] = target[0]
        if target[1] is not None:
            request["namespace"] = target[1]
        async for lines in self._lines(request):
            yield lines

    async def _lines(self, request: dict[str, Any]) -> AsyncGenerator[list[bytes], None]:
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
                yield watchframe.split(chunk)
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
        if self._session is not None:
            await self._session.close()
        await self.inner.close()
