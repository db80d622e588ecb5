"""What an application sees and answers: a parsed `Request`, and a `Reply`, `Streaming` or `Upgrade`.

The shapes are plain and cheap (slots, a named tuple) because the apiserver makes
one of each per call on its hottest path. Header names are lower-cased bytes as
sent; the target is kept raw (still percent-encoded): the application decodes it.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}


class Request:
    """One parsed request: `method` ("GET"), `path` and `query` as sent (str, latin-1, not decoded), `headers`
    (lower-cased name → its first value, bytes, as Go's Header.Get), `body` (bytes, de-chunked), the peer's address `remote` ("" if none),
    and over TLS the certificate the client presented, `peer_cert` (DER bytes, verified against the server's
    client CAs in the handshake; None if none was presented)."""

    __slots__ = ("body", "fields", "headers", "method", "path", "peer_cert", "query", "remote", "repeated", "version")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[bytes, bytes],
        body: bytes,
        remote: str,
        version: str = "1.1",
        fields: list[tuple[bytes, bytes]] | None = None,
        peer_cert: bytes | None = None,
        repeated: dict[bytes, list[bytes]] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.remote = remote
        self.version = version
        self.fields = fields
        self.peer_cert = peer_cert
        """Every header as sent (case and duplicates kept): only for an upgrade, which replays them."""
        self.repeated = repeated
        """Only the headers sent more than once: lower-cased name → every value in order (None if none repeats)."""

    def header(self, name: bytes) -> str | None:
        """A header's value as text (latin-1), or None; `name` lower-case."""
        v = self.headers.get(name)
        return None if v is None else v.decode("latin-1")

    def header_values(self, name: bytes) -> list[bytes]:
        """Every value of a header, in the order sent (Go's `Header.Values`); `name` lower-case."""
        if self.repeated is not None and name in self.repeated:
            return self.repeated[name]
        v = self.headers.get(name)
        return [] if v is None else [v]


class Reply(NamedTuple):
    """A whole response: status, body, extra headers (besides Content-Type and Content-Length), content type."""

    status: int
    body: bytes
    headers: dict[str, str] | None = None
    content_type: bytes = JSON


class ChunkSink(Protocol):
    """Where a streaming response writes its body; see `kos.http.chunked.ChunkWriter`."""

    def write(self, data: bytes) -> None: ...
    def offer(self, parts: list[bytes], size: int) -> bool: ...
    async def drain(self) -> None: ...
    @property
    def closing(self) -> bool: ...


class Streaming:
    """A response whose body is produced over time (a watch): `body(sink)` writes it, chunked, and returns at its end.

    `abandon`, if given, runs instead of `body` when the body will never run (the client went away first, or
    asked with HEAD), so what the response holds (a watcher, a quota) is released either way.
    """

    __slots__ = ("abandon", "body", "content_type", "headers", "status")

    def __init__(
        self,
        body: Callable[[ChunkSink], Awaitable[None]],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: bytes = JSON,
        abandon: Callable[[], None] | None = None,
    ) -> None:
        self.body = body
        self.abandon = abandon
        self.status = status
        self.headers = headers
        self.content_type = content_type


class Upgrade:
    """Hand the connection to another protocol (a WebSocket server): `protocol()` gets the transport and the
    request's bytes, replayed; nothing on this connection is HTTP/1.1 of ours afterwards."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: Callable[[], asyncio.Protocol]) -> None:
        self.protocol = protocol


Response = Reply | Streaming | Upgrade


class Application(Protocol):
    """What `HTTPProtocol` serves: `serve` answers a request; `refuse` renders the layer's own errors."""

    async def serve(self, request: Request) -> Response: ...

    def refuse(self, status: int, message: str) -> Reply: ...


def reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def head(status: int, content_type: bytes, headers: dict[str, str] | None, framing: bytes) -> bytes:
    """A response head: status line, Content-Type, the `framing` line(s) (Content-Length or chunked), extras."""
    parts = [b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\n%b" % (status, _REASONS.get(status, b"Unknown"), content_type,
                                                            framing)]  # fmt: skip
    if headers:
        parts.extend(field_lines(headers))
    parts.append(b"\r\n")
    return b"".join(parts)


def field_lines(headers: dict[str, str]) -> list[bytes]:
    """Header lines (`Name: value\\r\\n`) as UTF-8 bytes (obs-text to HTTP, RFC 9110 §5.5, as Go sends them).

    A value may carry text a client sent (a Warning names the unknown fields of a body, and JSON keys may hold
    CR, LF or NUL): every control character becomes a space, as Go's net/http does for CR and LF, so no value
    can end the head or add a field of its own (response splitting).
    """
    out = []
    for k, v in headers.items():
        line = f"{k}: {v}"
        if not line.isprintable():
            line = "".join(c if c.isprintable() else " " for c in line)
        out.append(line.encode() + b"\r\n")
    return out


def encode_reply(reply: Reply, with_body: bool = True, close: bool = False, keep_alive: bool = False) -> bytes:
    """The bytes of a whole response; `with_body` False for HEAD (the length is still the body's).

    `close`: the connection closes after it (`Connection: close`). `keep_alive`: say `Connection: keep-alive`,
    which an HTTP/1.0 client needs to reuse the connection (RFC 9112 §9.3 and Appendix C.2.2)."""
    status, body, headers, ctype = reply
    first = b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nContent-Length: %d\r\n" % (
        status, _REASONS.get(status, b"Unknown"), ctype, len(body))  # fmt: skip
    if headers is None and not close and not keep_alive:
        return first + b"\r\n" + body if with_body else first + b"\r\n"
    parts = [first]
    if headers:
        parts.extend(field_lines(headers))
    if close:
        parts.append(b"Connection: close\r\n")
    elif keep_alive:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if with_body:
        parts.append(body)
    return b"".join(parts)


def request_head(req: Request) -> bytes:
    """A request's head as it was sent (every header field, in order): for a protocol the connection is handed to."""
    target = req.path + ("?" + req.query if req.query else "")
    parts = [b"%b %b HTTP/%b\r\n" % (req.method.encode(), target.encode("latin-1"), req.version.encode())]
    parts.extend(b"%b: %b\r\n" % f for f in req.fields or ())
    parts.append(b"\r\n")
    return b"".join(parts)
