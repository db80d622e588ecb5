"""Where a client connects and as whom: `ClientConfig`, what client-go's `rest.Config` is to its clientsets.

A `Client` is made from a server URL alone (plain http, or https verified against the system's CAs) or from a
`ClientConfig` — usually read from a kubeconfig (`ClientConfig.from_kubeconfig`, the file read by
`kos.pki.kubeconfig.load_kubeconfig` as clientcmd reads it): the server, the TLS context (the CA to trust,
the client certificate to present) and the headers every request carries (a bearer token). The headers are
encoded once into the transport's request template, so a token costs nothing per call.
"""

from __future__ import annotations

import dataclasses
import os
import ssl as ssl_
from collections.abc import Callable, Mapping

from kos.pki.kubeconfig import KubeConfig, KubeConfigError, load_kubeconfig

__all__ = ["ClientConfig", "KubeConfigError", "check_headers"]


@dataclasses.dataclass(frozen=True, slots=True)
class ClientConfig:
    """A server URL, the TLS context to reach it (None: plain http, or the system's CAs for https), and the
    headers every request carries (`Authorization`; kept out of `repr`). `kubeconfig` is where it came from;
    `before_connect` is called before each new connection (reloading a rotated client certificate)."""

    server: str
    ssl: ssl_.SSLContext | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    kubeconfig: KubeConfig | None = None
    before_connect: Callable[[], None] | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_headers(self.headers)

    @classmethod
    def from_kubeconfig(
        cls, path: str | os.PathLike[str], *, server: str | None = None, context: str | None = None
    ) -> ClientConfig:
        """The current (or named) context of the kubeconfig at `path`; `server`, if given, replaces its server
        (the CA, client certificate and token still apply). Raises KubeConfigError (see `load_kubeconfig`)."""
        kc = load_kubeconfig(path, context=context)
        if server:
            kc = dataclasses.replace(kc, server=server.rstrip("/"))
        ctx = kc.ssl_context()
        return cls(kc.server, ctx, kc.headers(), kc, kc.certificate_reloader(ctx) if ctx is not None else None)

    @classmethod
    def for_server(cls, server: str) -> ClientConfig:
        """`server` with no kubeconfig: plain http, or https verified against the system's CAs (TLS >= 1.2)."""
        ctx = None
        if server.startswith("https://"):
            ctx = ssl_.create_default_context()
            ctx.minimum_version = ssl_.TLSVersion.TLSv1_2
        return cls(server.rstrip("/"), ctx)


def check_headers(headers: Mapping[str, str]) -> None:
    """Raises ValueError for a header name or value that would break the request head (CR, LF, non-latin-1)."""
    for k, v in headers.items():
        if not k or not k.isascii() or not (k.isprintable() and v.isprintable()) or ":" in k or " " in k:
            raise ValueError(f"header {k!r} cannot be sent")
        try:
            v.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"the value of header {k!r} cannot be sent") from None
