"""Bounds on what one client can make the server hold: header sizes and times, pipelining, watches.

Every connection, request and watch costs memory, a file descriptor or a timer
until it ends; a client that sends half a request, never reads, or opens watches
without end must meet a bound, get a prompt 4xx or a closed connection, and leave
nothing behind. The numbers follow kube-apiserver where it has one: its HTTP
server (k8s.io/apiserver/pkg/server/secure_serving.go) sets Go's
`MaxHeaderBytes: 1 << 20`, `ReadHeaderTimeout: 32 * time.Second` ("just shy of
requestTimeoutUpperBound") and `IdleTimeout: 90 * time.Second` ("matches
http.DefaultTransport keep-alive timeout"), and Go answers a header section past
its bound with 431. The per-line and per-count bounds are aiohttp's defaults
(`max_line_size`/`max_field_size` 8190, `max_headers` 128), so the two HTTP front
ends (`fastpath` and aiohttp behind it) agree; with them the whole head is at most
about 1 MiB, Go's figure.
"""

from __future__ import annotations

import dataclasses

from kos.api import errors


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

    @property
    def max_head_bytes(self) -> int:
        """The most a request head can take within the line and count bounds (about 1 MiB by default)."""
        return (self.max_headers + 1) * (self.max_line_bytes + 2) + 2


class ClientQuota:
    """How many of one thing (watches, multiplexed connections) each client may hold at once.

    A client is its address (there is no authenticated identity yet). A refused acquisition is 429
    with Retry-After.
    """

    def __init__(self, per_client: int, what: str, advice: str) -> None:
        self.per_client = per_client
        self.what = what
        self.advice = advice
        self._open: dict[str, int] = {}

    def acquire(self, client: str) -> None:
        n = self._open.get(client, 0)
        if n >= self.per_client:
            raise errors.too_many_requests(
                f"too many {self.what} open from {client}: the limit is {self.per_client} per client; {self.advice}",
                retry_after=5,
            )
        self._open[client] = n + 1

    def release(self, client: str) -> None:
        n = self._open.get(client, 0) - 1
        if n > 0:
            self._open[client] = n
        else:
            self._open.pop(client, None)

    def count(self, client: str) -> int:
        return self._open.get(client, 0)


def watch_quota(per_client: int) -> ClientQuota:
    """Open watches per client, HTTP and multiplexed: one client on a connection of its own per watch is
    bounded by file descriptors; on the watch multiplexer nothing else bounds it, so both count here."""
    return ClientQuota(per_client, "watches", "end some watches or multiplex fewer selectors")


def watchmux_quota(per_client: int) -> ClientQuota:
    """Multiplexed connections per client: each may hold its own selectors and queued output (bounded per
    connection), so the number of them bounds what one client can make the server hold."""
    return ClientQuota(per_client, "watch multiplexer connections", "multiplex more watches on fewer connections")
