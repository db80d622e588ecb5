"""Requests out of a byte stream: httptools (llhttp) callbacks, with the size bounds of `HTTPLimits`.

`RequestParser.feed` takes what a connection read; each complete request is
handed to `deliver(request, close_after)`; a request past a bound or malformed
raises `Refusal` (its status and words for the client); an upgrade request ends
HTTP on the connection, and `feed` returns the bytes that followed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httptools

from kos.http.limits import HTTPLimits, content_length_over
from kos.http.messages import Request


class Refusal(Exception):
    """A request the layer refuses itself: `status` (400, 413, 417, 431) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Parse:
    """The request being parsed (its parts, as httptools hands them over)."""

    __slots__ = ("body", "body_bytes", "fields", "headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.fields: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_bytes = 0


class RequestParser:
    """Parses one connection's requests; `in_message`, `in_head` and `since` (loop time the current request, or
    the wait for one, began) say where it is, for the connection's timer."""

    def __init__(
        self,
        limits: HTTPLimits,
        deliver: Callable[[Request, bool], None],
        expect_continue: Callable[[], None],
    ) -> None:
        self._deliver = deliver
        self._expect_continue = expect_continue
        self._max_line = limits.max_line_bytes
        self._max_headers = limits.max_headers
        self._max_head = limits.max_head_bytes
        self._max_body = limits.max_body
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._cur = _Parse()
        self.remote = ""
        """The peer's address, given to every request."""
        self.in_message = False
        self.in_head = True
        self.since = self._loop.time()
        self._head_bytes = 0
        self._line_bytes = 0
        self._completed_in_feed = False

    def feed(self, data: bytes) -> bytes | None:
        """Parse `data`; None, or (after an upgrade request) the bytes that followed it. Raises Refusal, or
        what a `deliver` callback raised."""
        self._completed_in_feed = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:  # the rest of the read belongs to the protocol upgraded to
            return data[e.args[0] :]
        except httptools.HttpParserCallbackError as e:  # httptools wraps what a callback raised
            raise (e.__context__ or e) from None
        except httptools.HttpParserError as e:
            raise Refusal(400, f"malformed HTTP request: {e}") from None
        if self.in_head and self.in_message:
            self._check_partial_head(data)
        return None

    def _check_partial_head(self, data: bytes) -> None:
        """A read ended inside a request head: bound what httptools holds of it (it keeps an unfinished line)."""
        if self._completed_in_feed:  # the head began after a message that ended in this read, where is unknown:
            self._head_bytes = self._line_bytes = 0  # count from the next read (one read is at most 256 KiB)
            return
        self._head_bytes += len(data)
        nl = data.rfind(b"\n")
        self._line_bytes = self._line_bytes + len(data) if nl < 0 else len(data) - nl - 1
        if self._head_bytes > self._max_head or self._line_bytes > self._max_line + 2:
            what = "header section" if self._head_bytes > self._max_head else "request or header line"
            limit = self._max_head if self._head_bytes > self._max_head else self._max_line
            raise Refusal(431, f"the request's {what} is too long: the limit is {limit} bytes")

    # --- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._cur = _Parse()
        self.in_message = True
        self.since = self._loop.time()

    def on_url(self, url: bytes) -> None:
        cur = self._cur
        cur.url += url
        if len(cur.url) > self._max_line:
            raise Refusal(431, f"the request line is too long: the limit is {self._max_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) + 2 > self._max_line:
            raise Refusal(431, f"a request header is too long: the limit is {self._max_line} bytes")
        fields = self._cur.fields
        if len(fields) >= self._max_headers:
            raise Refusal(431, f"too many request headers: the limit is {self._max_headers}")
        fields.append((name, value))
        self._cur.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._head_bytes = self._line_bytes = 0
        h = self._cur.headers
        length = h.get(b"content-length")
        if length is not None and content_length_over(length, self._max_body):
            raise Refusal(413, f"Request entity too large: limit is {self._max_body} bytes")
        expect = h.get(b"expect")
        if expect is not None:
            if expect.lower() != b"100-continue":
                raise Refusal(417, f"Expect: {expect.decode('latin-1')} is not supported")
            self._expect_continue()

    def on_body(self, body: bytes) -> None:
        cur = self._cur
        cur.body.append(body)
        cur.body_bytes += len(body)
        if cur.body_bytes > self._max_body:  # a chunked body has no length up front
            raise Refusal(413, f"Request entity too large: limit is {self._max_body} bytes")

    def on_message_complete(self) -> None:
        self._completed_in_feed = True
        self.in_message = False
        self.in_head = True
        p, cur = self._parser, self._cur
        path, _, query = cur.url.partition(b"?")
        upgrade = p.should_upgrade()
        body = cur.body[0] if len(cur.body) == 1 else b"".join(cur.body)
        req = Request(p.get_method().decode(), path.decode("latin-1"), query.decode("latin-1"), cur.headers, body,
                      self.remote, p.get_http_version(), cur.fields if upgrade else None)  # fmt: skip
        self._deliver(req, upgrade or not p.should_keep_alive())
