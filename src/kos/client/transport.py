"""The one seam between the typed client and the network: `Transport`, two operations.

`Client` (and through it every reflector and informer) talks to the apiserver only
through this protocol, as httpx's `Client` does through its transports:

- `request(method, path, query, body, headers, timeout)` sends one call and returns a
  `Response` (status, headers, body), whatever the status; it raises `ConnectionFailed`
  when no answer came (refused, reset, TLS failure) and `TimeoutError` after `timeout`.
- `stream(path, query, headers)` opens a watch and returns an async generator of its event
  lines, in batches: each item is a list of the lines (bytes without the newline, framed as
  `kos.api.watchframe` says) that arrived together, so the per-event loop is the caller's
  own `for` and not a generator step per line; it ends when the
  server ends the watch, raises `StreamRefused` if the server answered with a non-2xx
  status, `ConnectionFailed` if the connection broke. Closing the iterator (`aclose`, or
  leaving an `async for` early) cancels the watch.

The outcomes (`Response`, `ConnectionFailed`, `StreamRefused`) are kos.http.clientresponse's, beside the
HTTP client that the etcd store's gateway transport shares. Implementations: `kos.http.clientpool.HTTPPool`
(keep-alive HTTP/1.1 connections, plain or TLS through an `ssl.SSLContext`), `kos.client.watchmux.WatchMux`
(wraps another transport: its calls go through, its watches share one WebSocket), and
`kos.testing.transport.MockTransport` (a handler function, no sockets).

Failover (issue 13) is one more wrapper with the same shape, `kos.client.failover.FailoverTransport`:
one inner transport per apiserver; each call goes to the current one and, on `ConnectionFailed`,
`TimeoutError` or a 503, the current one moves on — the call is sent again only when
`ConnectionFailed.retryable` says the server never saw it (a refused connection) or the method is safe.
A stream that fails is not retried once it has delivered events: the reflector above resumes it from
its last resourceVersion, and that new `stream` call lands on whichever endpoint is current. Nothing in
`Client` or `Reflector` changes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Protocol

from kos.http.clientresponse import Response

__all__ = ["Transport"]


class Transport(Protocol):
    """How the client reaches an apiserver (see the module docstring for the contract)."""

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
        """One call: `path` is absolute (`/apis/...`), `query` is encoded here; `headers` add to the defaults."""
        ...

    def stream(
        self, path: str, *, query: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[list[bytes], None]:
        """The event lines of one watch in batches, until the server ends it (closable: `aclose()`)."""
        ...

    async def close(self) -> None:
        """Close every connection; the transport is not used again."""
        ...
