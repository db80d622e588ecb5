"""One HTTP/1.1 connection: requests parsed by httptools, answered in order by an `Application`.

Profiles of the apiserver under the driver's load once showed about 40% of its
CPU in aiohttp's per-request machinery around handlers that take a few tens of
microseconds; this protocol does the little HTTP/1.1 needs — parse with
httptools (llhttp), queue, answer in order — and nothing per request besides a
`Request` and the response bytes.

Every request on a connection is served here, whatever it is: a call gets a
`Reply`; a stream (a watch) gets its head, then chunks until it ends, then the
next request is answered; a WebSocket upgrade is handed, after the answers
before it, to the protocol the application names (the request's head replayed,
with whatever followed it). Requests may be pipelined in any mix: each is
answered in order. A malformed one (or one past a bound) is answered with the
application's rendering of the error after the answers before it, and the
connection closes.

Bounds (`limits.HTTPLimits`): a request line or header line past
`max_line_bytes`, more than `max_headers` fields, or a head past their product (a
line that never ends) is 431 and the connection closes; a body past `max_body`
is 413; a head must arrive within `header_timeout` of its first byte, a body and
the next request within `idle_timeout`, or the connection is dropped. Pipelined
requests are parsed at most `max_pipelined` ahead (then reading pauses), and the
next answer waits while the socket's write buffer is above its high-water mark,
so a client that sends and never reads holds one response, not all of them; one
that does not read for `idle_timeout` while an answer waits is dropped.

It works on any asyncio transport, TCP or TLS (`loop.create_server(..., ssl=ctx)`); over TLS every request
carries the certificate the client presented (`Request.peer_cert`), read once when the connection is made.
"""

from __future__ import annotations

import asyncio
import collections
import typing
from collections.abc import Awaitable, Callable

from kos.http import messages
from kos.http.chunked import ChunkWriter
from kos.http.limits import HTTPLimits
from kos.http.messages import Application, Reply, Request, Streaming, Upgrade
from kos.http.parser import Refusal, RequestParser
from kos.util.log import get_logger

log = get_logger(__name__)

LINGER = 0.5
"""Seconds a refused connection reads and discards before it closes, so the client sees the answer."""
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _FlowControl(asyncio.Protocol):
    """Both directions' flow control of a connection: answers wait while the client does not read
    (`pause_writing`), and reading pauses while too many requests wait for answers."""

    transport: asyncio.Transport | None

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._write_paused = False
        self._write_paused_since = 0.0
        self._drained: asyncio.Future[None] | None = None
        self._read_paused = False

    def pause_writing(self) -> None:
        self._write_paused = True
        self._write_paused_since = self._loop.time()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drained()

    async def _wait_drained(self) -> None:
        if self._write_paused and self.transport is not None:
            self._drained = self._loop.create_future()
            await self._drained

    def _wake_drained(self) -> None:
        d, self._drained = self._drained, None
        if d is not None and not d.done():
            d.set_result(None)

    def _pause_reading(self) -> None:
        t = self.transport
        if not self._read_paused and t is not None and not t.is_closing():
            self._read_paused = True
            t.pause_reading()

    def _resume_reading(self) -> None:
        t = self.transport
        if self._read_paused and t is not None and not t.is_closing():
            self._read_paused = False
            t.resume_reading()


class HTTPProtocol(_FlowControl):
    """Serves `app` on one connection; see the module docstring. Shapes: bytes in, `Request`s to `app.serve`."""

    def __init__(self, app: Application, limits: HTTPLimits | None = None) -> None:
        super().__init__()
        self._app = app
        lim = self._limits = limits or HTTPLimits()
        self._max_input = lim.max_head_bytes + lim.max_body
        self._max_pipelined = lim.max_pipelined
        self._max_queued_bytes = lim.max_body
        self._queued_bytes = 0
        """Bodies of the requests waiting in `_queue`: reading pauses past one largest body, so a client that
        pipelines large bodies behind a long answer (a watch) makes the server hold one, not `max_pipelined`."""
        self.transport = None
        self._parser = RequestParser(lim, self._enqueue, self._continue)
        self._parser.check_head = getattr(app, "check_head", None)
        self._queue: collections.deque[tuple[Request | Reply | None, bool]] = collections.deque()
        """Requests to answer in order (or a final error reply, or None: just close), each with whether to close."""
        self._worker: asyncio.Task[None] | None = None
        self._dead = False
        """Refused: input is discarded (for a moment, so the client reads the answer before a reset)."""
        self._discarded = 0
        self._closing = False
        self._upgrade_tail: bytearray | None = None
        """After an upgrade request: the bytes that followed it (the new protocol's), held until it is served."""
        self._since = self._loop.time()
        """When the connection went idle (or began)."""
        self._served = False
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername")
        self._parser.remote = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:  # the handshake is done: the client's certificate, verified (kos.http.tls), or None
            self._parser.peer_cert = tls.getpeercert(binary_form=True)
        self._timer = self._loop.call_at(self._since + self._limits.header_timeout, self._check_time)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._worker is not None:
            self._worker.cancel()
        self._wake_drained()

    def data_received(self, data: bytes) -> None:
        if self._dead:
            self._discarded += len(data)
            if self._discarded > self._max_input and self.transport is not None:
                self.transport.abort()  # lingering after an error is for the answer to arrive, not for a flood
            return
        if self._upgrade_tail is not None:
            self._upgrade_tail += data
            if len(self._upgrade_tail) > self._max_input:
                self._pause_reading()
            return
        try:
            tail = self._parser.feed(data)
        except Exception as e:  # handled outside the parser's frames
            failure: Exception = e
        else:
            if tail is not None:
                self._upgrade_tail = bytearray(tail)
            return
        self._fail(failure)

    def _fail(self, failure: BaseException) -> None:
        if isinstance(failure, Refusal):
            self._reply_and_close(self._app.refuse(failure.status, str(failure)))
        else:
            log.error("serving a request failed", error=repr(failure))
            self._reply_and_close(self._app.refuse(500, f"an internal error occurred: {failure!r}"))

    def _continue(self) -> None:
        """`Expect: 100-continue`: say so now if nothing is being answered (else the client sends the body after
        its own short wait)."""
        if self._worker is None and not self._queue and self.transport is not None:
            self.transport.write(_CONTINUE)

    def _enqueue(self, req: Request, close: bool) -> None:
        queue = self._queue
        queue.append((req, close))
        if req.body:
            self._queued_bytes += len(req.body)
        if self._worker is None:
            self._worker = self._loop.create_task(self._serve_queue())
        elif len(queue) >= self._max_pipelined or self._queued_bytes > self._max_queued_bytes:
            self._pause_reading()

    # --- serving -------------------------------------------------------------------------------

    async def _serve_queue(self) -> None:
        queue = self._queue
        try:
            while queue and not self._closing:
                if self._write_paused:  # the client is not reading: answer the next request once it has
                    await self._wait_drained()
                if self.transport is None:
                    return
                item, close = queue.popleft()
                if isinstance(item, Request) and item.body:
                    self._queued_bytes -= len(item.body)
                if (
                    self._read_paused
                    and len(queue) <= self._max_pipelined // 2
                    and (self._queued_bytes <= self._max_queued_bytes // 2)
                ):
                    self._resume_reading()
                if item is None:  # an error that could not be answered: just close
                    self._close_after_error()
                    return
                if isinstance(item, Reply):  # a refusal: the last answer
                    self._write(item, True, True)
                    self._close_after_error()
                    return
                if not await self._answer(item, close):
                    return
        except Exception as e:  # a failure past the application's answer (a stream's body): cut the connection
            log.error("serving a request failed", error=repr(e))
            if self.transport is not None:
                self.transport.abort()
            return
        finally:
            self._worker = None
        self._since = self._loop.time()
        self._served = True
        if self._closing and self.transport is not None:
            self.transport.close()

    async def _answer(self, req: Request, close: bool) -> bool:
        """Serve one request and write its answer; False when the connection is done (closed or handed over)."""
        try:
            resp = await self._app.serve(req)
        except Exception as e:  # a bug, not the client's: answered, never a connection left hanging
            log.error("serving a request failed", method=req.method, path=req.path, error=repr(e))
            resp, close = self._app.refuse(500, f"an internal error occurred: {type(e).__name__}"), True
        if self.transport is None:
            if isinstance(resp, Streaming) and resp.abandon is not None:
                resp.abandon()
            return False
        if isinstance(resp, Reply):
            close = close or self._closing
            self._write(resp, req.method != "HEAD", close, not close and req.version == "1.0")
        elif isinstance(resp, Streaming):
            close = close or self._closing
            close = await stream(self.transport, req, resp, self._wait_drained, close) or close
        elif req.fields is not None:
            self._hand_over(req, resp)
            return False
        else:
            self._write(self._app.refuse(400, "an upgrade needs an Upgrade request"), True, True)
            close = True
        if close and self.transport is not None:
            self.transport.close()
            return False
        return self.transport is not None

    def _write(self, reply: Reply, with_body: bool, close: bool, keep_alive: bool = False) -> None:
        assert self.transport is not None
        self.transport.write(messages.encode_reply(reply, with_body, close, keep_alive))

    def _hand_over(self, req: Request, resp: Upgrade) -> None:
        """Give the connection to the upgraded protocol: its request replayed, then what followed it."""
        t = self.transport
        assert t is not None and req.fields is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tail, self._upgrade_tail = self._upgrade_tail or b"", None
        proto = resp.protocol()
        self.transport = None
        t.set_protocol(proto)
        proto.connection_made(t)
        proto.data_received(messages.request_head(req) + bytes(tail))
        if self._read_paused:
            self._read_paused = False
            t.resume_reading()

    def _reply_and_close(self, reply: Reply) -> None:
        """A final answer (an error): after the answers before it, then the connection closes."""
        self._dead = True
        if self._worker is not None:
            self._queue.append((reply, True))
        elif self.transport is not None:
            self._write(reply, True, True)
            self._close_after_error()

    def _close_after_error(self) -> None:
        """Close after refusing a request the client may still be sending: end our side, discard the rest for
        a moment, then close — closing at once would reset the connection and lose the answer (Go's net/http
        does the same, `closeWriteAndWait`)."""
        t = self.transport
        if t is None:
            return
        self._dead = True
        if t.can_write_eof():
            t.write_eof()
            self._loop.call_later(LINGER, t.close)
        else:  # TLS: close_notify, then close
            t.close()

    # --- the server's hold on the connection -----------------------------------------------------

    def close(self) -> None:
        """Close the connection once the answer being written is done (server shutdown); queued ones are dropped."""
        if self.transport is None:
            return
        if self._worker is None:
            self.transport.close()
        else:
            self._closing = True

    async def answered(self) -> None:
        """Return once the answer being written is done (then the connection closes, on `close`)."""
        w = self._worker
        if w is not None:
            await asyncio.wait([w])

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- time -------------------------------------------------------------------

    def _deadline(self) -> tuple[float | None, str]:
        lim = self._limits
        if self._worker is not None or self._queue or self._read_paused:
            if self._write_paused:  # answers wait for a client that does not read
                return self._write_paused_since + lim.idle_timeout, "the client stopped reading"
            return None, ""
        p = self._parser
        if p.in_message:
            if p.in_head:
                return p.since + lim.header_timeout, "the request head did not arrive in time"
            return p.since + lim.header_timeout + lim.idle_timeout, "the request body stalled"
        if self._served:
            return self._since + lim.idle_timeout, "idle"
        return self._since + lim.header_timeout, "no request arrived in time"

    def _check_time(self) -> None:
        """The connection's one timer: drop it when a head, a body, an idle wait or a stalled write takes too long."""
        self._timer = None
        t = self.transport
        if t is None:
            return
        now = self._loop.time()
        deadline, what = self._deadline()
        if deadline is not None and now >= deadline:
            log.debug("closing a connection", reason=what)
            self._dead = True
            t.abort()
            return
        poll = now + min(self._limits.header_timeout, self._limits.idle_timeout)
        self._timer = self._loop.call_at(poll if deadline is None else min(deadline, poll), self._check_time)


async def stream(
    t: asyncio.Transport, req: Request, resp: Streaming, drain: Callable[[], Awaitable[None]], close: bool = False
) -> bool:
    """Write a streaming response on `t`: its head, then its body as `resp.body` writes it (chunked to an
    HTTP/1.1 client, raw to an HTTP/1.0 one), then its end. Whether the connection must close after it.
    `close`: the connection closes after this answer anyway (the client asked), which the head then says."""
    chunked = req.version == "1.1"
    if not chunked:
        framing = b"Connection: close\r\n"
    elif close:
        framing = b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
    else:
        framing = b"Transfer-Encoding: chunked\r\n"
    t.write(messages.head(resp.status, resp.content_type, resp.headers, framing))
    if req.method == "HEAD":
        if resp.abandon is not None:
            resp.abandon()
        return not chunked
    writer = ChunkWriter(t, drain, chunked=chunked)
    await resp.body(writer)
    writer.end()
    return not chunked
