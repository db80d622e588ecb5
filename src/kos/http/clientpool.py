"""The lean HTTP/1.1 client: keep-alive connections parsed by httptools, plain or TLS.

It serves two callers, which is why it sits in kos.http, below both: kos.client's `Client` (every
controller, agent and driver reaching an apiserver: `HTTPPool` is a kos.client.transport `Transport`) and
kos.storage.etcd_gateway (the etcd store over etcd's JSON gateway). It knows nothing of either: requests
and line-framed streams, answered with kos.http.clientresponse's outcomes.

Profiles of the controller manager, the agents and the driver showed a third of
their CPU inside aiohttp's client machinery per request (request and response
objects, timeouts, payload writers, stream readers). kos's requests are small
JSON bodies to one server, so this transport does only that: a pool of
persistent connections, one request at a time each, the request written in
one `write`, the response parsed by httptools (Content-Length or chunked).

Watches (`stream`) get a connection of their own, outside the pool's limit (a
watch holds it for minutes; counting it would starve calls), closed when the
watch ends. The body's chunks are cut into lines as they arrive and handed over
in batches; past `STREAM_HIGH_WATER` bytes not yet taken by the reader, the socket
stops being read until the reader catches up (TCP then pushes back on the server).

`https://` URLs are served over TLS with the `ssl.SSLContext` given (the system's
default context when none is): asyncio's TLS transport, the certificate verified
against the context's CAs and the URL's host name (`server_hostname`). A
certificate that does not verify fails the call with a `ConnectionFailed` that
says so. `http://` with a context is refused: a URL says which it is.

Headers every request carries (`headers`: a bearer token's `Authorization`) are encoded once, into the
request head's template with Host and User-Agent: they cost a call nothing. Headers that change
(kos.http.clientheaders' `RotatingHeaders`: kos.pki.bearer's `BearerHeaders`, a kubeconfig's `tokenFile`
re-read once a minute) cost a `version()` call, a clock read; the template is re-encoded when the version
changes. A call's own header of the
same name (spelled the same) replaces the default one for that call — how a client with another identity
shares the pool (`Client.with_headers`). `before_connect`, if given, is called before each new
connection (a kubeconfig's client certificate files reloaded when rotated: kos.pki.reload).

A request on a reused connection that the server had already closed (idle
keep-alive timeout) is retried once on a fresh connection when no byte of a
response arrived: the server most likely never saw it (it closed while idle) — but
a server that died as the request arrived looks the same, so when that retry fails too
the error is not `retryable`. A connection that cannot be made fails with a `retryable`
ConnectionFailed (no request was written), which `kos.client.failover` sends to the
next server; client-go's transport draws the same line (net/http `shouldRetryRequest`). Every connection has TCP keepalive
tuned to notice a silent peer within 5 s (kos.http.clientkeepalive), and a connection not made within
CONNECT_TIMEOUT (a hung server: the kernel accepts, nothing answers the TLS handshake) fails the same way.

The pool knows every connection it made until that connection is lost, closing ones included (a TLS
close waits for the server's close_notify), and `close` aborts them all and returns only when each is
gone: a pool closed before its event loop leaves no transport behind (see `HTTPPool.close`).
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_
import typing
import urllib.parse
from collections.abc import AsyncGenerator, Callable, Mapping

import httptools

from kos.http.clientheaders import RotatingHeaders, check_headers
from kos.http.clientkeepalive import keep_alive
from kos.http.clientresponse import ConnectionFailed, Response, StreamRefused
from kos.http.lines import LineSplitter

__all__ = ["CONNECT_TIMEOUT", "STREAM_HIGH_WATER", "HTTPPool"]

CONNECT_TIMEOUT = 4.0
"""Seconds a new connection (TCP connect and TLS handshake) may take: kos.http.clientkeepalive's detection
budget (2 s idle + 2 probes 1 s apart), leaving the failover's backoff within issue 13's 5 s. A stopped
(SIGSTOP) or hung server's kernel still completes the TCP handshake and answers keepalive probes, but
nothing answers the TLS handshake: without this bound a call waiting for a connection hung until the server
resumed (asyncio's own TLS handshake timeout is 60 s), whatever the call's timeout (found by `kos chaos`,
apiserver-stop)."""
STREAM_HIGH_WATER = 1 << 20
"""Bytes of a watch's lines buffered for a slow reader before the socket stops being read."""

_Result = tuple[int, bytes, dict[bytes, bytes]]
_C = typing.TypeVar("_C", bound="_Conn")


class _Watch:
    """The receiving side of a watch on a connection: line batches, end or error, and a wake-up."""

    __slots__ = ("batches", "ended", "error", "queued", "splitter", "wakeup")

    def __init__(self) -> None:
        self.batches: collections.deque[list[bytes]] = collections.deque()
        self.splitter = LineSplitter()
        self.queued = 0
        self.ended = False
        self.error: Exception | None = None
        self.wakeup = asyncio.Event()


class _Conn(asyncio.Protocol):
    """A pooled connection: one call at a time, its answer parsed whole.

    From `connection_made` to `connection_lost` it is in `live`, its pool's set of every connection not yet
    gone (closing ones too: `HTTPPool.close` ends and waits for them all).
    """

    __slots__ = (
        "_body", "_done", "_got_bytes", "_headers", "_live", "_parser", "_reused", "closed", "gone", "transport",
    )  # fmt: skip

    def __init__(self, live: set[_Conn]) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._live = live
        self.gone: asyncio.Future[None] | None = None
        """Set by `HTTPPool.close` to learn when the connection is lost."""
        self._parser = httptools.HttpResponseParser(self)
        self._done: asyncio.Future[_Result] | None = None
        self._body: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._got_bytes = False
        self._reused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here
        self.transport = typing.cast(asyncio.Transport, transport)
        self._live.add(self)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ConnectionFailed(f"malformed HTTP response: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._live.discard(self)
        if self.gone is not None and not self.gone.done():
            self.gone.set_result(None)
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

    async def send(self, data: bytes, reused: bool, timeout: float | None) -> _Result:
        """Write a request; its answer (status, body, headers), or ConnectionFailed / TimeoutError."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_Result] = loop.create_future()
        self._done = fut
        self._body = []
        self._headers = {}
        self._got_bytes = False
        self._reused = reused
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(data)
        if timeout is None:  # a watch: no bound on its head (it may wait for a resourceVersion)
            return await fut
        # a timer, not asyncio.wait_for: on Python 3.11 that wraps every request in a task of its own
        timer = loop.call_later(timeout, self._timed_out, timeout)
        try:
            return await fut
        finally:
            timer.cancel()

    def _timed_out(self, timeout: float) -> None:
        self._fail(TimeoutError(f"no response within {timeout:g}s"))
        self.close()


class _WatchConn(_Conn):
    """A watch's own connection: the head of a 2xx answer, then its body as line batches (`watch`).

    A separate class so that the callbacks a watch needs (httptools calls every `on_*` a protocol
    has) cost the pooled calls nothing.
    """

    __slots__ = ("refused", "watch")

    def __init__(self, live: set[_Conn]) -> None:
        super().__init__(live)
        self.watch = _Watch()
        self.refused = False
        """A non-2xx answer: its whole body is read as a call's (a Status)."""

    def connection_lost(self, exc: Exception | None) -> None:
        w = self.watch
        if not w.ended and w.error is None:
            w.error = ConnectionFailed(f"the watch connection closed: {exc or 'EOF'}")
            w.wakeup.set()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        fut = self._done
        status = self._parser.get_status_code()
        if not 200 <= status < 300:
            self.refused = True
        elif fut is not None and not fut.done():  # the head is the answer; the body streams on
            fut.set_result((status, b"", self._headers))

    def on_body(self, body: bytes) -> None:
        if self.refused:
            self._body.append(body)
            return
        w = self.watch
        lines = w.splitter.feed(body)
        if lines:
            w.batches.append(lines)
            w.wakeup.set()
        w.queued += len(body)
        if w.queued > STREAM_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.refused:
            super().on_message_complete()
            return
        w = self.watch
        if w.splitter.tail.strip():  # a last line without its newline
            w.batches.append([w.splitter.tail])
        w.ended = True
        w.wakeup.set()
        self.close()


def _header_lines(headers: Mapping[str, str] | None) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()) if headers else ""


class HTTPPool:
    """A `Transport` to one server over keep-alive HTTP/1.1 connections (at most `limit` for calls).

    `url` is `http://host:port` or `https://host:port`; `ssl` is the TLS context for https
    (default: `ssl.create_default_context()`, the system's CAs); `headers` go with every request
    (see the module docstring). Raises ValueError for another scheme, a context with http, or a
    header that cannot be sent.
    """

    def __init__(
        self, url: str, *, limit: int = 64, user_agent: str = "kos", ssl: ssl_.SSLContext | None = None,
        headers: Mapping[str, str] | None = None, before_connect: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        u = urllib.parse.urlsplit(url)
        self._before_connect = before_connect
        if u.scheme == "https":
            self.ssl: ssl_.SSLContext | None = ssl if ssl is not None else ssl_.create_default_context()
        elif u.scheme == "http":
            if ssl is not None:
                raise ValueError(f"an SSL context was given for a plain http URL ({url}): use https://")
            self.ssl = None
        else:
            raise ValueError(f"the HTTP transport speaks http and https, not {u.scheme!r} ({url})")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if self.ssl else 80)
        self.limit = limit if limit > 0 else 1 << 30
        self._idle: collections.deque[_Conn] = collections.deque()
        self._count = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._streams: set[_WatchConn] = set()
        """The connections of open watches."""
        self._live: set[_Conn] = set()
        """Every connection made and not yet lost: idle, busy, watching, or closing (a TLS close waits for the
        server's close_notify). `close` ends them all."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._base_head = f"Host: {host}:{self.port}\r\nUser-Agent: {user_agent}\r\nAccept: application/json\r\n"
        self._headers = headers or {}
        self._source: RotatingHeaders | None = headers if isinstance(headers, RotatingHeaders) else None
        """Headers that change (a kubeconfig's `tokenFile` token): the head template is re-encoded when their
        `version()` does."""
        self._version: object = self._source.version() if self._source is not None else None
        self._encode_defaults()
        self._closed = False

    async def _connect(self, protocol: type[_C]) -> _C:
        self._check_open()
        loop = asyncio.get_running_loop()
        live = self._live
        if self._before_connect is not None:
            self._before_connect()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self.ssl is None:
                    _, c = await loop.create_connection(lambda: protocol(live), self.host, self.port)
                else:
                    _, c = await loop.create_connection(lambda: protocol(live), self.host, self.port, ssl=self.ssl,
                                                        server_hostname=self.host)  # fmt: skip
        except TimeoutError as e:  # before OSError, its base class
            raise ConnectionFailed(f"cannot connect to {self.host}:{self.port} within {CONNECT_TIMEOUT:g}s "
                                   "(TCP and TLS handshake): a hung or unreachable server", retryable=True) from e  # fmt: skip
        except ssl_.SSLCertVerificationError as e:
            raise ConnectionFailed(
                f"TLS to {self.host}:{self.port}: the server's certificate did not verify: {e.verify_message}",
                retryable=True,
            ) from e
        except ssl_.SSLError as e:
            raise ConnectionFailed(f"TLS handshake with {self.host}:{self.port} failed: {e}", retryable=True) from e
        except OSError as e:  # refused, unreachable, timed out: no request was written
            raise ConnectionFailed(f"cannot connect to {self.host}:{self.port}: {e}", retryable=True) from e
        assert c.transport is not None
        if self._closed:  # closed while connecting: `close` may be waiting for this one to go
            c.closed = True
            c.transport.abort()
            self._check_open()
        keep_alive(c.transport)
        return c

    def _check_open(self) -> None:
        """Raises a retryable ConnectionFailed (nothing was sent) once `close` was called."""
        if self._closed:
            raise ConnectionFailed(f"the pool to {self.host}:{self.port} is closed", retryable=True)

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
                    c = await self._connect(_Conn)
                except BaseException:  # a cancelled connect frees its slot too, or the pool shrinks for good
                    self._count -= 1
                    self._wake()
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

    def _encode_defaults(self) -> None:
        """The head template with the default headers as they are now (a token source's current token)."""
        self._defaults = dict(self._headers)
        check_headers(self._defaults)
        self._head = (self._base_head + _header_lines(self._defaults)).encode("latin-1")

    def _encode(
        self, method: str, path: str, query: Mapping[str, str] | None, body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> bytes:  # fmt: skip
        if self._source is not None and (version := self._source.version()) is not self._version:  # rotated
            self._version = version
            self._encode_defaults()
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._head]
        if headers:
            if self._defaults and not self._defaults.keys().isdisjoint(headers):
                head[1] = self._head_without(headers)
            head.append(_header_lines(headers).encode("latin-1"))
        if body is not None:
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        if body:
            head.append(body)
        return b"".join(head)

    def _head_without(self, replaced: Mapping[str, str]) -> bytes:
        """The head template without the default headers a call replaces (`_encode`)."""
        kept = {k: v for k, v in self._defaults.items() if k not in replaced}
        return (self._base_head + _header_lines(kept)).encode("latin-1")

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
        """One call over a pooled connection (see `kos.client.transport.Transport.request`)."""
        data = self._encode(method, path, query, body, headers)
        idle = self._idle
        for attempt in (0, 1):
            # an idle connection without a coroutine of `_acquire` (the common case, on every call's path)
            while idle and idle[-1].closed:
                idle.pop()
                self._count -= 1
            if idle:
                c, reused = idle.pop(), True
            else:
                try:
                    c, reused = await self._acquire()
                except ConnectionFailed as e:
                    if attempt:  # the first attempt may have reached the server (it died as the request came)
                        raise ConnectionFailed(str(e)) from e
                    raise
            try:
                status, payload, got = await c.send(data, reused, timeout)
            except ConnectionFailed as e:
                c.close()
                self._release(c)
                if e.retryable and attempt == 0:
                    continue
                if attempt and e.retryable:
                    raise ConnectionFailed(str(e)) from e
                raise
            except BaseException:
                c.close()
                self._release(c)
                raise
            self._release(c)
            return Response(status, payload, got)
        raise ConnectionFailed("unreachable")

    async def stream(
        self, path: str, *, query: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[list[bytes], None]:
        """A watch on a connection of its own (see `kos.client.transport.Transport.stream`)."""
        c = await self._connect(_WatchConn)
        self._streams.add(c)
        try:
            # the answer's head (2xx), or the whole answer (refused); no timeout
            status, body, got = await c.send(self._encode("GET", path, query, None, headers), False, None)
            if c.refused:  # the whole answer was read
                raise StreamRefused(Response(status, body, got))
            transport = c.transport
            assert transport is not None
            w = c.watch
            batches = w.batches
            while True:
                while batches:
                    lines = batches.popleft()
                    yield lines
                if w.queued > STREAM_HIGH_WATER:
                    w.queued = 0
                    transport.resume_reading()
                if w.ended:
                    return
                if w.error is not None:
                    raise w.error
                w.queued = 0
                w.wakeup.clear()
                await w.wakeup.wait()
        finally:
            self._streams.discard(c)
            c.close()

    async def close(self) -> None:
        """Drop every connection the pool made and return once each is gone: idle and busy ones, those of open
        watches (which then fail with ConnectionFailed), and those already closing. Later calls and watches
        fail with a retryable ConnectionFailed.

        The connections are aborted, not closed: a TLS connection's close sends close_notify and waits for the
        server's (up to asyncio's `ssl_shutdown_timeout`, 30 s) — an etcd gateway ends a watch's stream only
        after its handler notices — and a transport still closing when its owner closes the event loop is
        leaked (uvloop: "unclosed resource", the loop's close failing with EBUSY). Waiting for every
        `connection_lost` (which an abort schedules at once) is what makes "closed" mean "no socket left".
        """
        self._closed = True
        self._idle.clear()
        loop = asyncio.get_running_loop()
        while self._live:  # again if a connection being made as this began came in meanwhile (`_connect`)
            gone = []
            for c in list(self._live):
                c.closed = True
                c.gone = c.gone or loop.create_future()
                gone.append(c.gone)
                assert c.transport is not None  # in `live` only from connection_made on
                c.transport.abort()
            await asyncio.wait(gone)

    def __repr__(self) -> str:
        scheme = "https" if self.ssl else "http"
        return f"HTTPPool({scheme}://{self.host}:{self.port}, {self._count} connections)"
