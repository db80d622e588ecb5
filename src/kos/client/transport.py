"""A lean HTTP/1.1 client for request/response calls: keep-alive connections parsed by httptools.

Profiles of the controller manager, the agents and the driver showed a third of
their CPU inside aiohttp's client machinery per request (request and response
objects, timeouts, payload writers, stream readers). kos's requests are small
JSON bodies to one server, so this transport does only that: a pool of
persistent connections, one request at a time each, the request written in
one `write`, the response parsed by httptools (Content-Length or chunked). Watches
stay on aiohttp (long-lived streams, WebSockets).

A request on a reused connection that the server had already closed (idle
keep-alive timeout) is retried once on a fresh connection when no byte of a
response arrived: the server never saw it.
"""

from __future__ import annotations

import asyncio
import collections
import typing
import urllib.parse

import httptools


class ConnectionFailed(Exception):
    def __init__(self, msg: str, *, retryable: bool = False) -> None:
        super().__init__(msg)
        self.retryable = retryable


class _Conn(asyncio.Protocol):
    __slots__ = ("_body", "_done", "_got_bytes", "_headers", "_parser", "_reused", "closed", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._done: asyncio.Future[tuple[int, bytes, dict[bytes, bytes]]] | None = None
        self._body: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._got_bytes = False
        self._reused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ConnectionFailed(f"malformed HTTP response: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            retry = self._reused and not self._got_bytes
            self._fail(ConnectionFailed(f"connection closed by the server: {exc or 'EOF'}", retryable=retry))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        fut = self._done
        if fut is not None and not fut.done():
            fut.set_result((self._parser.get_status_code(), b"".join(self._body), self._headers))
        if not self._parser.should_keep_alive():
            self.close()

    def _fail(self, e: Exception) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(e)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def send(self, data: bytes, reused: bool, timeout: float) -> tuple[int, bytes, dict[bytes, bytes]]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._body = []
        self._headers = {}
        self._got_bytes = False
        self._reused = reused
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(data)
        # a timer, not asyncio.wait_for: on Python 3.11 that wraps every request in a task of its own
        timer = loop.call_later(timeout, self._timed_out, timeout)
        try:
            return await self._done
        finally:
            timer.cancel()

    def _timed_out(self, timeout: float) -> None:
        self._fail(TimeoutError(f"no response within {timeout:g}s"))
        self.close()


class HTTPPool:
    def __init__(self, url: str, *, limit: int = 64, user_agent: str = "kos") -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            raise ValueError(f"the lean transport speaks plain http, not {u.scheme!r}")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.limit = limit if limit > 0 else 1 << 30
        self._idle: collections.deque[_Conn] = collections.deque()
        self._count = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._head = (
            f"Host: {self.host}:{self.port}\r\nUser-Agent: {user_agent}\r\nAccept: application/json\r\n".encode()
        )
        self._closed = False

    async def _acquire(self) -> tuple[_Conn, bool]:
        while True:
            while self._idle:
                c = self._idle.pop()
                if not c.closed:
                    return c, True
                self._count -= 1
            if self._count < self.limit:
                self._count += 1
                try:
                    _, c = await asyncio.get_running_loop().create_connection(_Conn, self.host, self.port)
                except BaseException as e:  # a cancelled connect frees its slot too, or the pool shrinks for good
                    self._count -= 1
                    self._wake()
                    if isinstance(e, OSError):
                        raise ConnectionFailed(f"cannot connect to {self.host}:{self.port}: {e}") from e
                    raise
                return c, False
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.cancelled():
                    self._waiters.remove(fut)  # a caller that gave up leaves no waiter behind
                else:
                    self._wake()  # woken, then cancelled: pass the wake-up on
                raise

    def _wake(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def _release(self, c: _Conn) -> None:
        if c.closed or self._closed:
            self._count -= 1
            c.close()
        else:
            self._idle.append(c)
        self._wake()

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: bytes | None = None,
        content_type: str = "application/json", timeout: float = 60.0,
    ) -> tuple[int, bytes]:  # fmt: skip
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._head]
        if body is not None:
            head.append(f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        if body:
            head.append(body)
        data = b"".join(head)
        for attempt in (0, 1):
            c, reused = await self._acquire()
            try:
                status, payload, _ = await c.send(data, reused, timeout)
            except ConnectionFailed as e:
                c.close()
                self._release(c)
                if e.retryable and attempt == 0:
                    continue
                raise
            except BaseException:
                c.close()
                self._release(c)
                raise
            self._release(c)
            return status, payload
        raise ConnectionFailed("unreachable")

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def __repr__(self) -> str:
        return f"HTTPPool({self.host}:{self.port}, {self._count} connections)"
