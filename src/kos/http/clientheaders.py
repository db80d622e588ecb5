"""The headers an HTTP client sends with every request: which can be sent at all, and which change over time.

`check_headers` refuses a name or value that would break a request head (CR, LF, a colon in a name,
non-latin-1): every header kos's client sends passes through it once, when a configuration or a pool is
made, never per call. `RotatingHeaders` is the shape of default headers whose values change while a pool
lives — a kubeconfig's `tokenFile` bearer token, re-read as Kubernetes rotates it (kos.pki.bearer's
`BearerHeaders`): the pool (kos.http.clientpool) encodes its defaults once into a request-head template and
asks `version()` on each request whether to encode them again. A protocol, not a base class, so that
kos.pki (beside kos.http in the layers, neither importing the other) can satisfy it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

__all__ = ["RotatingHeaders", "check_headers"]


@runtime_checkable
class RotatingHeaders(Protocol):
    """Default headers (a `Mapping[str, str]`) whose values may change: `version()` returns the same object
    (`is`) for as long as they stay the same, and a new one once any changed. It is called on every request,
    so it must be cheap (a bearer token source: one clock read)."""

    def version(self) -> object: ...


def check_headers(headers: Mapping[str, str]) -> None:
    """Raises ValueError for a header name or value that would break the request head (CR, LF, non-latin-1)."""
    for k, v in headers.items():
        if not k or not k.isascii() or not (k.isprintable() and v.isprintable()) or ":" in k or " " in k:
            raise ValueError(f"header {k!r} cannot be sent")
        try:
            v.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"the value of header {k!r} cannot be sent") from None
