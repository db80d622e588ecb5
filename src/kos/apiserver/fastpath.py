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
waits until the calls before it have been answered.
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import typing
from collections.abc import Callable

import httptools

from kos.api.errors import BadRequest, InternalError, StatusError
from kos.apiserver.handlers import PREFIX, Call, Reply, ResourceAPI, error_reply, wants_watch

log = logging.getLogger(__name__)

_FAST_PREFIX = PREFIX + "/"
_MUX_PATH = PREFIX + "/watchmux"
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
MAX_LINE = 8190
"""Longest request line or header field (aiohttp's limit, so both front ends agree)."""
MAX_HEADERS = 128


def _too_long(content_length: bytes, limit: int) -> bool:
    """Whether a Content-Length exceeds `limit` (or is not one: aiohttp then answers), without int() of thousands."""
    digits = content_length.strip().lstrip(b"0")
    if not digits:
        return False
    return len(digits) > 18 or not digits.isdigit() or int(digits) > limit


class _HandOff(Exception):
    """Raised from the parser callback: this request is aiohttp's."""


class FastHTTP(asyncio.Protocol):
    def __init__(self, api: ResourceAPI, fallback: Callable[[], asyncio.Protocol], max_body: int) -> None:
        self._api = api
        self._fallback = fallback
        self._max_body = max_body
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._queue: collections.deque[tuple[Call | Reply, bool]] = collections.deque()
        """Calls to answer in order (or a final error reply), each with whether to close after it."""
        self._dead = False
        self._worker: asyncio.Task[None] | None = None
        self._close_after = False
        # The bytes of the message being parsed, for a hand-off. Known only when the message began at the start
        # of a read (clients wait for a response before the next request, so that is the normal case).
        self._raw = bytearray()
        self._raw_ok = True
        self._completed_in_feed = False
        self._last_complete = False
        self._handing_off = False

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._worker is not None:
            self._worker.cancel()

    def data_received(self, data: bytes) -> None:
        if self._dead:
            return
        if self._handing_off:
            self._raw += data  # waiting for earlier calls to be answered; aiohttp gets it all then
            return
        if self._raw_ok:
            self._raw += data
        self._completed_in_feed = False
        self._last_complete = False
        failure: BaseException | None = None
        try:
            self._parser.feed_data(data)
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

    # --- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._last_complete = False
        if self._completed_in_feed:  # a pipelined request began mid-read: its first byte is unknown
            self._raw_ok = False
            self._raw = bytearray()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_LINE:
            raise BadRequest(f"the request line is too long: the limit is {MAX_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_LINE:
            raise BadRequest(f"a request header is too long: the limit is {MAX_LINE} bytes")
        if len(self._headers) >= MAX_HEADERS:
            raise BadRequest(f"too many request headers: the limit is {MAX_HEADERS}")
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        p = self._parser
        h = self._headers
        if (
            p.should_upgrade()
            or p.get_http_version() != "1.1"
            or b"transfer-encoding" in h
            or b"expect" in h
            or _too_long(h.get(b"content-length", b""), self._max_body)
        ):
            raise _HandOff()
        method = p.get_method().decode()
        if method == "HEAD":
            raise _HandOff()
        path = self._url.split(b"?", 1)[0]
        if len(path) <= len(_FAST_PREFIX) or not path.startswith(_FAST_PREFIX.encode()) or path == _MUX_PATH.encode():
            raise _HandOff()  # `PREFIX/` (discovery) included
        # watches are streams: aiohttp's
        if method == "GET" and (b"watch" in self._url[len(_FAST_PREFIX) :]):
            tail, query = self._split()
            if wants_watch(method, tail, query):
                raise _HandOff()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._completed_in_feed = True
        self._last_complete = True
        tail, query = self._split()
        h = self._headers
        accept, ctype = h.get(b"accept"), h.get(b"content-type")
        body = b"".join(self._body)

        async def read_body() -> bytes:
            return body

        call = Call(self._parser.get_method().decode(), tail, query, accept.decode("latin-1") if accept else None,
                    ctype.decode("latin-1") if ctype else None, read_body)  # fmt: skip
        self._queue.append((call, not self._parser.should_keep_alive()))
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._serve_queue())

    def _split(self) -> tuple[str, str]:
        """(the raw path after the prefix, the raw query): `ResourceAPI.serve` decodes them (see urlparts)."""
        path, _, qs = self._url.partition(b"?")
        return path[len(_FAST_PREFIX) :].decode("latin-1"), qs.decode("latin-1")

    # --- serving -------------------------------------------------------------------------------

    async def _serve_queue(self) -> None:
        try:
            while self._queue:
                call, close = self._queue.popleft()
                reply = call if isinstance(call, Reply) else await self._api.serve(call)
                if self.transport is None:
                    return
                self._write(reply)
                if close:
                    self.transport.close()
                    return
        finally:
            self._worker = None
        if self._handing_off:
            self._hand_off()

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
        """A final answer (an error): after the calls before it, then the connection closes."""
        self._dead = True
        if self._worker is not None:
            self._queue.append((reply, True))
        elif self.transport is not None:
            self._write(reply)
            self.transport.close()

    def close(self) -> None:
        """Close the connection (server shutdown); one handed to aiohttp is aiohttp's to close."""
        if self.transport is not None:
            self.transport.close()

    # --- hand-off to aiohttp ---------------------------------------------------------------------

    def _begin_hand_off(self) -> None:
        if not self._raw_ok:
            self._reply_and_close(error_reply(BadRequest(
                "this request was pipelined behind another on one connection; send it on a connection of its own"
            )))  # fmt: skip
            return
        self._handing_off = True
        if self._worker is None:
            self._hand_off()

    def _hand_off(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        proto = self._fallback()
        t.set_protocol(proto)
        proto.connection_made(t)
        raw, self._raw = bytes(self._raw), bytearray()
        self.transport = None
        proto.data_received(raw)
