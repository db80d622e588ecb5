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

HeadCheck = Callable[[bytes, dict[bytes, bytes], bytes | None], tuple[int, str] | None]
"""`check(target, headers, peer_cert)` → (status, message) to refuse a request on its head alone, or None."""


class Refusal(Exception):
    """A request the layer refuses itself: `status` (400, 413, 417, 431; 401 from `check_head`) and a message for
    the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Parse:
    """The request being parsed (its parts, as httptools hands them over)."""

    __slots__ = ("body", "body_bytes", "fields", "headers", "repeated", "url", "version")

    def __init__(self) -> None:
        self.version = "1.1"
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.fields: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.repeated: dict[bytes, list[bytes]] | None = None


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
        self._max_wire = limits.max_body + limits.max_head_bytes
        """Bytes a body may take on the wire with its chunk framing and trailer section."""
        self._wire = 0
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._cur = _Parse()
        self.remote = ""
        """The peer's address, given to every request."""
        self.peer_cert: bytes | None = None
        """The client's certificate (DER) over TLS, given to every request."""
        self.check_head: HeadCheck | None = None
        """Asked, once the head of a request with a body is in, whether to refuse it before its body is read."""
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
        if self.in_message:
            if self.in_head:
                self._check_partial_head(data)
            else:  # a read ended inside a body: bound it with its framing and trailers (httptools holds a trailer
                self._wire += len(data)  # field whole until it ends; Go refuses excessive chunk overhead too)
                if self._wire > self._max_wire:
                    raise Refusal(413, f"Request entity too large: the body with its chunked framing and trailers "
                                       f"exceeds {self._max_wire} bytes")  # fmt: skip
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
        headers, key = self._cur.headers, name.lower()
        if key not in headers:
            headers[key] = value
        elif key == b"host":  # RFC 9112 §3.2: exactly one
            raise Refusal(400, "too many Host headers")
        else:  # the first counts, as Go's Header.Get reads it (so kube-apiserver, and a proxy in front of it);
            rep = self._cur.repeated  # every value is kept for the few readers of all (X-Remote-Group)
            if rep is None:
                rep = self._cur.repeated = {}
            rep.setdefault(key, [headers[key]]).append(value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._head_bytes = self._line_bytes = self._wire = 0
        cur = self._cur
        h = cur.headers
        version = cur.version = self._parser.get_http_version()
        if version != "1.1":
            _check_version(version, h)
        elif b"host" not in h:
            raise Refusal(400, "missing required Host header")  # RFC 9112 §3.2, as Go answers
        te = h.get(b"transfer-encoding")
        if te is not None and te.strip().lower() != b"chunked":  # llhttp refuses a final coding other than chunked
            raise Refusal(501, f"unsupported transfer encoding: {te.decode('latin-1')}")  # RFC 9112 §6.1, as Go
        length = h.get(b"content-length")
        if length is not None and content_length_over(length, self._max_body):
            raise Refusal(413, f"Request entity too large: limit is {self._max_body} bytes")
        if self.check_head is not None and (te is not None or (length is not None and length.strip() != b"0")):
            refused = self.check_head(cur.url, h, self.peer_cert)  # before the body: no buffering for the refused
            if refused is not None:
                raise Refusal(*refused)
        expect = h.get(b"expect")
        if expect is not None:
            if expect.lower() != b"100-continue":
                raise Refusal(417, f"Expect: {expect.decode('latin-1')} is not supported")
            if version == "1.1":  # RFC 9110 §10.1.1: ignored in an HTTP/1.0 request
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
        url = cur.url
        if url[:1] != b"/":
            url = _origin_form(url)
        path, _, query = url.partition(b"?")
        upgrade = p.should_upgrade()
        body = cur.body[0] if len(cur.body) == 1 else b"".join(cur.body)
        req = Request(p.get_method().decode(), path.decode("latin-1"), query.decode("latin-1"), cur.headers, body,
                      self.remote, cur.version, cur.fields if upgrade else None, self.peer_cert, cur.repeated)  # fmt: skip
        self._deliver(req, upgrade or not p.should_keep_alive())


def _check_version(version: str, headers: dict[bytes, bytes]) -> None:
    """An HTTP/1.0 request may not be chunked (RFC 9112 §6.1: its framing is faulty); versions other than 1.x are
    505 (RFC 9110 §15.6.6; Go answers the same)."""
    if version != "1.0":
        raise Refusal(505, f"HTTP/{version} is not supported: this server speaks HTTP/1.1")
    if b"transfer-encoding" in headers:
        raise Refusal(400, "an HTTP/1.0 request cannot carry Transfer-Encoding")


def _origin_form(url: bytes) -> bytes:
    """The path and query of an absolute-form target (`http://host/path?q`, RFC 9112 §3.2.2: a server MUST
    accept it); other forms (`*`, CONNECT's authority) are left as they are."""
    scheme, sep, rest = url.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return url
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    tail = rest[cut:]
    return tail if tail.startswith(b"/") else b"/" + tail
