"""Bounds on what one client can make an HTTP server hold: header sizes and times, pipelining, bodies.

Every connection and request costs memory, a file descriptor or a timer until
it ends; a client that sends half a request or never reads must meet a bound,
get a prompt 4xx or a closed connection, and leave nothing behind. The numbers
follow kube-apiserver where it has one: its HTTP server
(k8s.io/apiserver/pkg/server/secure_serving.go) sets Go's `MaxHeaderBytes: 1 << 20`,
`ReadHeaderTimeout: 32 * time.Second` ("just shy of requestTimeoutUpperBound") and
`IdleTimeout: 90 * time.Second` ("matches http.DefaultTransport keep-alive
timeout"), and Go answers a header section past its bound with 431. The
per-line and per-count bounds are aiohttp's defaults (8190 bytes, 128 fields);
with them a whole head is at most about 1 MiB, Go's figure.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class HTTPLimits:
    max_line_bytes: int = 8190
    """Longest request line, and longest header line (name, colon, value)."""
    max_headers: int = 128
    """Most header fields in one request."""
    header_timeout: float = 32.0
    """Seconds from a request's first byte (or a new connection's start) to the end of its head."""
    idle_timeout: float = 90.0
    """Seconds a keep-alive connection may wait for its next request; also how long a request body may
    stall and how long a response may wait for a client that does not read."""
    max_pipelined: int = 64
    """Requests parsed ahead of their answers on one connection before the server stops reading it."""
    max_body: int = 1 << 20
    """Largest request body in bytes (Content-Length or chunked); past it the answer is 413."""

    @property
    def max_head_bytes(self) -> int:
        """The most a request head can take within the line and count bounds (about 1 MiB by default)."""
        return (self.max_headers + 1) * (self.max_line_bytes + 2) + 2


def content_length_over(content_length: bytes, limit: int) -> bool:
    """Whether a Content-Length header value exceeds `limit` bytes, without int() of thousands of digits.

    A value that is not a number is not "over": the parser refuses it (400) on its own.
    """
    digits = content_length.strip().lstrip(b"0")
    if not digits:
        return False
    return len(digits) > 18 or (digits.isdigit() and int(digits) > limit)
