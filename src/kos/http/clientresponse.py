"""What one HTTP client call ends in: a `Response`, a watch the server refused, or no answer at all.

These are the outcomes of kos's HTTP client (kos.http.clientpool) and of every transport with its shape
(kos.client.transport's `Transport` protocol, its failover and multiplexing wrappers, kos.testing's mock), and
of the etcd store's JSON-gateway transport (kos.storage.etcd_gateway), which maps them onto gRPC statuses. They
live here, below both the client and the storage layers, so that either can use the pool without the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["ConnectionFailed", "Response", "StreamRefused"]


class ConnectionFailed(Exception):
    """No answer: the connection could not be made, broke, or its TLS handshake failed.

    `retryable` is True when the request surely never reached the server (the connection could not be
    made, or a reused keep-alive connection that the server had closed), so sending it again cannot
    apply it twice (Go's net/http `shouldRetryRequest` draws the same line).
    """

    def __init__(self, msg: str, *, retryable: bool = False) -> None:
        super().__init__(msg)
        self.retryable = retryable


@dataclasses.dataclass(slots=True)
class Response:
    """One HTTP answer, whatever its status."""

    status: int
    """The HTTP status code."""
    body: bytes
    headers: Mapping[bytes, bytes] = dataclasses.field(default_factory=dict)
    """Header names in lower case, as bytes (what the wire carried, undecoded)."""


class StreamRefused(Exception):
    """The server answered a watch with a non-2xx status: `response` is that answer (for an apiserver, its body
    is a Status)."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response
