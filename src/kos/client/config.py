"""Where a client connects and as whom: `ClientConfig`, what client-go's `rest.Config` is to its clientsets.

A `Client` is made from a server URL alone (plain http, or https verified against the system's CAs) or from a
`ClientConfig` — usually read from a kubeconfig (`ClientConfig.from_kubeconfig`, the file read by
`kos.pki.kubeconfig.load_kubeconfig` as clientcmd reads it): the server, the TLS context (the CA to trust,
the client certificate to present) and the headers every request carries (a bearer token). The headers are
encoded once into the transport's request template, so a token costs nothing per call; a kubeconfig's
`tokenFile` is re-read once a minute (kos.pki.bearer, as client-go does: Kubernetes rotates ServiceAccount
tokens) and the template re-encoded when the token changes.

Several apiservers (issue 13) are several URLs sharing that CA and those credentials: `servers`, from a
comma-separated `--server a,b` (`split_servers`) or the kubeconfig's `kos.example.com/servers` extension
(kos.pki.kubeconfig); the Client then fails over between them (kos.client.failover).
"""

from __future__ import annotations

import dataclasses
import os
import ssl as ssl_
from collections.abc import Callable, Mapping

from kos.http.clientheaders import check_headers
from kos.pki.kubeconfig import KubeConfig, KubeConfigError, load_kubeconfig
from kos.util.clock import REAL_CLOCK, Clock

__all__ = ["ClientConfig", "KubeConfigError", "split_servers"]


@dataclasses.dataclass(frozen=True, slots=True)
class ClientConfig:
    """A server URL, the TLS context to reach it (None: plain http, or the system's CAs for https), and the
    headers every request carries (`Authorization`; kept out of `repr`; a `kos.pki.bearer.BearerHeaders` for
    a kubeconfig's `tokenFile`, whose token changes as the file does). `kubeconfig` is where it came from;
    `before_connect` is called before each new connection (reloading a rotated client certificate).
    `servers` lists every apiserver to fail over between, `server` first (empty: `server` alone)."""

    server: str
    ssl: ssl_.SSLContext | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    kubeconfig: KubeConfig | None = None
    before_connect: Callable[[], None] | None = dataclasses.field(default=None, repr=False)
    servers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_headers(self.headers)

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every server URL, the first one `server`."""
        return self.servers or (self.server,)

    @classmethod
    def from_kubeconfig(
        cls, path: str | os.PathLike[str], *, server: str | None = None, context: str | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> ClientConfig:  # fmt: skip
        """The current (or named) context of the kubeconfig at `path`; `server`, if given (one URL or several,
        comma-separated), replaces its server and servers (the CA, client certificate and token still apply).
        A `tokenFile` token is re-read once a minute on `clock` (`KubeConfig.headers`). Raises KubeConfigError
        (see `load_kubeconfig`)."""
        kc = load_kubeconfig(path, context=context)
        if server:
            urls = split_servers(server)
            kc = dataclasses.replace(kc, server=urls[0], servers=urls if len(urls) > 1 else ())
        ctx = kc.ssl_context()
        reloader = kc.certificate_reloader(ctx) if ctx is not None else None
        return cls(kc.server, ctx, kc.headers(clock), kc, reloader, kc.servers)

    @classmethod
    def for_server(cls, server: str) -> ClientConfig:
        """`server` (one URL or several, comma-separated, all http:// or all https://) with no kubeconfig: plain
        http, or https verified against the system's CAs (TLS >= 1.2)."""
        urls = split_servers(server)
        ctx = None
        if urls[0].startswith("https://"):
            ctx = ssl_.create_default_context()
            ctx.minimum_version = ssl_.TLSVersion.TLSv1_2
        return cls(urls[0], ctx, servers=urls if len(urls) > 1 else ())


def split_servers(value: str) -> tuple[str, ...]:
    """The URLs of a comma-separated list (`"https://a:6443,https://b:6443"`), trailing slashes removed.

    Raises ValueError for an empty list or entry, or for a list that mixes http:// and https:// (one TLS
    context serves them all).
    """
    urls = tuple(u.strip().rstrip("/") for u in value.split(","))
    if not urls or not all(urls):
        raise ValueError(f"{value!r}: an empty server URL")
    if len({u.startswith("https://") for u in urls}) > 1:
        raise ValueError(f"{value!r} mixes http:// and https:// servers")
    return urls
