"""The HTTP front end for calls: keep-alive HTTP/1.1 parsed by httptools, everything else handed to aiohttp.

Profiles of the apiserver under the driver's load showed about 40% of its CPU in
aiohttp's per-request machinery (request and response objects, routing,
middleware, payload writers) around handlers that take a few tens of
microseconds. Nearly all of that load is calls — create, get, list, update,
patch, delete of the three kinds — with small JSON bodies. So the listening
socket speaks to this protocol first: it parses requests with httptools and
serves calls under `/apis/network.example.com/v1alpha1/` itself, through the
same `ResourceAPI.serve` as the aiohttp front end (same checks, errors, metrics).

Anything else — watches (long streams), the WebSocket watch multiplexer,
discovery, OpenAPI, health, metrics, HTTP/1.0, HEAD, chunked or oversized
bodies, `Expect` — is handed to aiohttp: the connection's protocol is switched
to an aiohttp request handler, which is fed the request's bytes from its first
byte, and the connection belongs to aiohttp from then on. Responses on one
connection leave in request order (pipelined calls are queued), and a hand-off
waits until the calls before it have been answered. httptools does not say where
in a read a message begins, so a request that begins in the middle of a read
(pipelined behind another) cannot be handed over as raw bytes: from it on,
messages are parsed here and re-serialised whole (method, target, every header as
sent, the body with its length) until a read ends at a message's end — or an
upgrade, whose following bytes httptools locates — and then handed over.

Bounds (`limits.HTTPLimits`, the same as aiohttp's settings behind it): a request
line or header line past `max_line_bytes`, more than `max_headers` fields, or a
head past their product (a line that never ends) is 431 and the connection
closes; a head must arrive within `header_timeout` of its first byte, a body and
the next request within `idle_timeout`, or the connection is dropped. Pipelined
requests are parsed at most `max_pipelined` ahead (then reading pauses), and the
next answer waits while the socket's write buffer is above its high-water mark,
so a client that sends and never reads holds one response, not all of them.
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import typing
from collections.abc import Callable

import httptools

from kos.api.errors import (
    BadRequest,
    InternalError,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    StatusError,
)
from kos.apiserver.handlers import PREFIX, Call, Reply, ResourceAPI, error_reply, wants_watch
from kos.apiserver.limits import HTTPLimits

log = logging.getLogger(__name__)

_FAST_PREFIX = PREFIX + "/"
_MUX_PATH = PREFIX + "/watchmux"
_FAST_PREFIX_B = _FAST_PREFIX.encode()
_MUX_PATH_B = _MUX_PATH.encode()
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"expect"))
_LINGER = 0.5


def _too_long(content_length: bytes, limit: int) -> bool:
    """Whether a Content-Length exceeds `limit` (or is not one: aiohttp then answers), without int() of thousands."""
    digits = content_length.strip().lstrip(b"0")
    if not digits:
        return False
    return len(digits) > 18 or not digits.isdigit() or int(digits) > limit


class _HandOff(Exception):
    """Raised from the parser callback: this request is aiohttp's."""


class FastHTTP(asyncio.Protocol):
    def __init__(
        self,
        api: ResourceAPI,
        fallback: Callable[[], asyncio.Protocol],
        max_body: int,
        limits: HTTPLimits | None = None,
    ) -> None:
        self._api = api
        self._fallback = fallback
        self._max_body = max_body
        lim = self._limits = limits or HTTPLimits()
        self._max_line = lim.max_line_bytes
        self._max_headers = lim.max_headers
        self._max_head = lim.max_head_bytes
        self._max_pipelined = lim.max_pipelined
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._fields: list[tuple[bytes, bytes]] = []
        """Every header as sent (duplicates and case kept), to re-serialise a forwarded request."""
        self._body: list[bytes] = []
        self._queue: collections.deque[tuple[Call | Reply | None, bool]] = collections.deque()
        """Calls to answer in order (or a final error reply, or None: just close), each with whether to close after it."""
        self._dead = False
        """Refused: input is discarded (for a moment, so the client reads the answer before a reset)."""
        self._discarded = 0
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        # Where the parser is, for the size and time bounds.
        self._in_message = False
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._line_bytes = 0
        self._since = self._loop.time()  # when the current request began, or the connection went idle
        self._served = False  # a fresh connection gets header_timeout to send its first request, not idle_timeout
        self._timer: asyncio.TimerHandle | None = None
        # Flow control.
        self._write_paused = False
        self._write_paused_since = 0.0
        self._drained: asyncio.Future[None] | None = None
        self._read_paused = False
        # The bytes of the message being parsed, for a hand-off. Known only when the message began at the start
        # of a read (clients wait for a response before the next request, so that is the normal case).
        self._raw = bytearray()
        self._raw_ok = True
        self._completed_in_feed = False
        self._last_complete = False
        self._handing_off = False
        # Pipelined messages for aiohttp, re-serialised (see the module docstring).
        self._forward: list[bytes] | None = None
        self._forward_bytes = 0
        self._forwarding = False  # the message being parsed is forwarded
        self._body_bytes = 0

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._timer = self._loop.call_at(self._since + self._limits.header_timeout, self._check_time)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._worker is not None:
            self._worker.cancel()
        self._wake_drained()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._write_paused_since = self._loop.time()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drained()

    def data_received(self, data: bytes) -> None:
        if self._dead:
            self._discarded += len(data)
            if self._discarded > self._max_head + self._max_body and self.transport is not None:
                self.transport.abort()  # lingering after an error is for the answer to arrive, not for a flood
            return
        if self._handing_off:
            self._raw += data  # waiting for earlier calls to be answered; aiohttp gets it all then
            if len(self._raw) > self._max_head + self._max_body:
                self._pause_reading()
            return
        if self._raw_ok:
            self._raw += data
        self._completed_in_feed = False
        self._last_complete = False
        failure: BaseException | None = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:  # only while forwarding: the rest of the read is the new protocol's
            self._forward_rest(data[e.args[0] :])
            return
        except httptools.HttpParserCallbackError as e:  # httptools wraps what a callback raised
            failure = e.__context__ or e
        except httptools.HttpParserError as e:
            failure = BadRequest(f"malformed HTTP request: {e}")
        if failure is not None:  # handled outside the except clause: aiohttp must not see it as a context
            if isinstance(failure, _HandOff):
                self._begin_hand_off()
            elif isinstance(failure, StatusError):
                self._reply_and_close(error_reply(failure))
            else:
                log.error("serving a request failed: %r", failure)
                self._reply_and_close(error_reply(InternalError(f"an internal error occurred: {failure!r}")))
            return
        if self._last_complete:  # the read ended exactly at a message's end: the next read starts a message
            self._raw = bytearray()
            self._raw_ok = True
            if self._forward is not None:
                self._forward_rest(b"")
        elif self._in_head:
            self._check_partial_head(data)

    def _check_partial_head(self, data: bytes) -> None:
        """A read ended inside a request head: bound what httptools holds of it (it keeps an unfinished line)."""
        if self._completed_in_feed:  # the head began after a message that ended in this read, where is unknown:
            self._head_bytes = self._line_bytes = 0  # count from the next read (one read is at most 256 KiB)
            return
        else:
            self._head_bytes += len(data)
            nl = data.rfind(b"\n")
            self._line_bytes = self._line_bytes + len(data) if nl < 0 else len(data) - nl - 1
        if self._head_bytes > self._max_head or self._line_bytes > self._max_line + 2:
            what = "header section" if self._head_bytes > self._max_head else "request or header line"
            limit = self._max_head if self._head_bytes > self._max_head else self._max_line
            self._reply_and_close(error_reply(RequestHeaderFieldsTooLarge(
                f"the request's {what} is too long: the limit is {limit} bytes"
            )))  # fmt: skip

    # --- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._fields = []
        self._body = []
        self._last_complete = False
        self._in_message = True
        self._since = self._loop.time()
        if self._completed_in_feed:  # a pipelined request began mid-read: its first byte is unknown
            self._raw_ok = False
            self._raw = bytearray()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_line:
            raise RequestHeaderFieldsTooLarge(f"the request line is too long: the limit is {self._max_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) + 2 > self._max_line:
            raise RequestHeaderFieldsTooLarge(f"a request header is too long: the limit is {self._max_line} bytes")
        fields = self._fields
        if len(fields) >= self._max_headers:
            raise RequestHeaderFieldsTooLarge(f"too many request headers: the limit is {self._max_headers}")
        fields.append((name, value))
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = self._line_bytes = 0
        p = self._parser
        h = self._headers
        forward = self._forward is not None
        if not forward:
            method = p.get_method()
            hand_off = (
                p.should_upgrade()
                or p.get_http_version() != "1.1"
                or b"transfer-encoding" in h
                or b"expect" in h
                or _too_long(h.get(b"content-length", b""), self._max_body)
                or method == b"HEAD"
            )
            if not hand_off:
                path = self._url.split(b"?", 1)[0]
                # watches are streams: aiohttp's
                hand_off = (
                    len(path) <= len(_FAST_PREFIX_B)  # `PREFIX/` (discovery) included
                    or not path.startswith(_FAST_PREFIX_B)
                    or path == _MUX_PATH_B
                    or (method == b"GET" and b"watch" in self._url[len(_FAST_PREFIX_B) :] and self._is_watch())
                )
            if not hand_off:
                return
            if self._raw_ok:
                raise _HandOff()
            self._forward = []
        # From here on, until a read ends at a message's end, every message goes to aiohttp re-serialised.
        if _too_long(h.get(b"content-length", b""), self._max_body):
            raise RequestEntityTooLarge(f"Request entity too large: limit is {self._max_body} bytes")
        self._forwarding = True
        self._body_bytes = 0

    def _is_watch(self) -> bool:
        tail, query = self._split()
        return wants_watch("GET", tail, query)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        if self._forwarding:  # a chunked body has no length up front
            self._body_bytes += len(body)
            if self._body_bytes > self._max_body:
                raise RequestEntityTooLarge(f"Request entity too large: limit is {self._max_body} bytes")

    def on_message_complete(self) -> None:
        self._completed_in_feed = True
        self._last_complete = True
        self._in_message = False
        self._in_head = True
        if self._forwarding:
            self._forwarding = False
            self._forward_message()
            return
        tail, query = self._split()
        h = self._headers
        accept, ctype = h.get(b"accept"), h.get(b"content-type")
        body = b"".join(self._body)

        async def read_body() -> bytes:
            return body

        call = Call(self._parser.get_method().decode(), tail, query, accept.decode("latin-1") if accept else None,
                    ctype.decode("latin-1") if ctype else None, read_body)  # fmt: skip
        queue = self._queue
        queue.append((call, not self._parser.should_keep_alive()))
        if self._worker is None:
            self._worker = self._loop.create_task(self._serve_queue())
        elif len(queue) >= self._max_pipelined:
            self._pause_reading()

    def _split(self) -> tuple[str, str]:
        """(the raw path after the prefix, the raw query): `ResourceAPI.serve` decodes them (see urlparts)."""
        path, _, qs = self._url.partition(b"?")
        return path[len(_FAST_PREFIX) :].decode("latin-1"), qs.decode("latin-1")

    # --- serving -------------------------------------------------------------------------------

    async def _serve_queue(self) -> None:
        try:
            queue = self._queue
            while queue:
                if self._write_paused:  # the client is not reading: answer the next call once it has
                    await self._wait_drained()
                if not self._connected():
                    return
                call, close = queue.popleft()
                if self._read_paused and len(queue) <= self._max_pipelined // 2 and not self._handing_off:
                    self._resume_reading()
                if call is None:  # an error that could not be answered: just close
                    self._close_after_error()
                    return
                reply = call if isinstance(call, Reply) else await self._api.serve(call)
                if self.transport is None:
                    return
                self._write(reply)
                if close:
                    if self._dead:
                        self._close_after_error()
                    else:
                        self.transport.close()
                    return
            if self._handing_off and self._write_paused:
                await self._wait_drained()
        finally:
            self._worker = None
        self._since = self._loop.time()
        self._served = True
        if self._handing_off:
            self._hand_off()
        elif self._closing and self.transport is not None:
            self.transport.close()

    def _connected(self) -> bool:
        return self.transport is not None

    def _write(self, reply: Reply) -> None:
        assert self.transport is not None
        status, body, headers = reply
        head = [b"HTTP/1.1 %d %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                % (status, _REASONS.get(status, b"Unknown"), len(body))]  # fmt: skip
        if headers:
            head.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
        head.append(b"\r\n")
        head.append(body)
        self.transport.write(b"".join(head))

    def _reply_and_close(self, reply: Reply) -> None:
        """A final answer (an error): after the calls before it, then the connection closes.

        While requests wait to be forwarded to aiohttp, the answer would be read as theirs: then the
        connection just closes after the calls before them.
        """
        self._dead = True
        answer: Reply | None = None if self._forward else reply
        if self._worker is not None:
            self._queue.append((answer, True))
        elif self.transport is not None:
            if answer is not None:
                self._write(answer)
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
            self._loop.call_later(_LINGER, t.close)
        else:
            t.close()

    def close(self) -> None:
        """Close the connection once the calls it carries are answered (server shutdown).

        A connection handed to aiohttp is aiohttp's to close.
        """
        if self.transport is None or self._handing_off:
            return
        if self._worker is None:
            self.transport.close()
        else:
            self._closing = True

    async def answered(self) -> None:
        """Return once the calls this connection carries are answered (it is handed off or closes then)."""
        w = self._worker
        if w is not None:
            await asyncio.wait([w])

    def abort(self) -> None:
        if self.transport is not None and not self._handing_off:
            self.transport.abort()

    # --- flow control and time -------------------------------------------------------------------

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

    def _check_time(self) -> None:
        """The connection's one timer: drop it when a head, a body, an idle wait or a stalled write takes too long."""
        self._timer = None
        t = self.transport
        if t is None:  # handed off: aiohttp's now (until then, answers before the hand-off are still timed)
            return
        lim = self._limits
        now = self._loop.time()
        deadline: float | None = None
        what = ""
        if self._worker is not None or self._queue or self._read_paused:
            if self._write_paused:  # answers wait for a client that does not read
                deadline, what = self._write_paused_since + lim.idle_timeout, "the client stopped reading"
        elif self._in_message:
            if self._in_head:
                deadline, what = self._since + lim.header_timeout, "the request head did not arrive in time"
            else:
                deadline, what = self._since + lim.header_timeout + lim.idle_timeout, "the request body stalled"
        elif self._served:
            deadline, what = self._since + lim.idle_timeout, "idle"
        else:
            deadline, what = self._since + lim.header_timeout, "no request arrived in time"
        if deadline is not None and now >= deadline:
            log.debug("closing a connection: %s", what)
            self._dead = True
            t.abort()
            return
        poll = now + min(lim.header_timeout, lim.idle_timeout)
        self._timer = self._loop.call_at(poll if deadline is None else min(deadline, poll), self._check_time)

    # --- hand-off to aiohttp ---------------------------------------------------------------------

    def _forward_message(self) -> None:
        """Re-serialise the message just parsed for aiohttp: the same request, its body with its length."""
        p = self._parser
        body = b"".join(self._body)
        parts = [b"%b %b HTTP/%b\r\n" % (p.get_method(), self._url, p.get_http_version().encode())]
        framed = False
        for name, value in self._fields:
            if name.lower() in _FRAMING:
                framed = True
                continue
            parts.append(b"%b: %b\r\n" % (name, value))
        if framed or body:
            parts.append(b"Content-Length: %d\r\n" % len(body))
        parts.append(b"\r\n")
        parts.append(body)
        data = b"".join(parts)
        assert self._forward is not None
        self._forward.append(data)
        self._forward_bytes += len(data)
        if self._forward_bytes > self._max_head + self._max_body:
            raise BadRequest(
                f"more than {self._max_head + self._max_body} bytes of requests were pipelined behind one that"
                " streams; wait for the answers before sending more"
            )

    def _forward_rest(self, tail: bytes) -> None:
        """The forwarded messages (and what follows an upgrade) go to aiohttp once the calls before are answered."""
        assert self._forward is not None
        self._raw = bytearray(b"".join(self._forward))
        self._raw += tail
        self._forward = None
        self._forward_bytes = 0
        self._raw_ok = True
        self._handing_off = True
        if self._worker is None:
            self._hand_off()

    def _begin_hand_off(self) -> None:
        self._handing_off = True
        if self._worker is None:
            self._hand_off()

    def _hand_off(self) -> None:
        t = self.transport
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if t is None or t.is_closing():
            return
        proto = self._fallback()
        t.set_protocol(proto)
        proto.connection_made(t)
        raw, self._raw = bytes(self._raw), bytearray()
        self.transport = None
        proto.data_received(raw)
        if self._read_paused:
            self._read_paused = False
            t.resume_reading()
