"""`/metrics` and health for every kos process, on the HTTP layer: one helper instead of an app per process.

    server = await serve_probes("0.0.0.0", 9090, registry, readyz=lambda: None if ready else "starting")
    ...
    await server.stop(1.0)

Over TLS with `ssl`: every kos listener is HTTPS unless its command is given `--insecure` (the command's
serving flags make the context, kos.cli.serving). A `kos.http.tls.ReloadingContext` follows its certificate
files while the server runs (`HTTPServer` polls it).

`/metrics` is the Prometheus text exposition of `registry`; `/healthz` and `/livez`
say the process runs; `/readyz` runs the `readyz` check (None: ready, 200 "ok";
a reason: 503 with it), as Kubernetes' probe endpoints do. A process may add its
own routes (`routes`: exact paths, or prefixes ending with "/"), served the same
way; any other path is 404, and a method other than GET or HEAD on a probe 405.
"""

from __future__ import annotations

import ssl as ssl_
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kos.http.messages import TEXT, Reply, Request, Response
from kos.http.server import HTTPServer
from kos.http.tls import ReloadingContext

Handler = Callable[[Request], Awaitable[Response]]
Check = Callable[[], str | None]
"""A readiness check: None when ready, else why not (text for the 503 body)."""

_METRICS_TYPE = CONTENT_TYPE_LATEST.encode()


def _ok() -> str | None:
    return None


class Probes:
    """The `Application` of a process's probe port: metrics, health, readiness and the process's own routes."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        readyz: Check = _ok,
        healthz: Callable[[], str] | None = None,
        routes: Mapping[str, Handler] | None = None,
    ) -> None:
        self.registry = registry
        self.readyz = readyz
        self.healthz = healthz
        self.routes = dict(routes or {})
        self.prefixes = [(p, h) for p, h in self.routes.items() if p.endswith("/")]

    async def serve(self, request: Request) -> Response:
        path = request.path
        if path in ("/metrics", "/healthz", "/livez", "/readyz"):
            if request.method not in ("GET", "HEAD"):
                return Reply(405, f"{request.method} is not allowed on {path}\n".encode(), None, TEXT)
            return self.probe(path)
        handler = self.routes.get(path)
        if handler is None:
            handler = next((h for p, h in self.prefixes if path.startswith(p)), None)
        if handler is None:
            return Reply(404, f"no such path: {path}\n".encode(), None, TEXT)
        return await handler(request)

    def probe(self, path: str) -> Reply:
        """The answer of one of the probe paths ("/metrics", "/healthz", "/livez", "/readyz")."""
        if path == "/metrics":
            return Reply(200, generate_latest(self.registry), None, _METRICS_TYPE)
        if path == "/readyz":
            why = self.readyz()
            return Reply(200, b"ok", None, TEXT) if why is None else Reply(503, why.encode(), None, TEXT)
        return Reply(200, (self.healthz() if self.healthz else "ok").encode(), None, TEXT)

    def refuse(self, status: int, message: str) -> Reply:
        return Reply(status, message.encode() + b"\n", None, TEXT)


async def serve_probes(
    host: str,
    port: int,
    registry: CollectorRegistry,
    *,
    readyz: Check = _ok,
    healthz: Callable[[], str] | None = None,
    routes: Mapping[str, Handler] | None = None,
    ssl: ssl_.SSLContext | ReloadingContext | None = None,
) -> HTTPServer:
    """Start serving `Probes` on `host:port` (0: any free port; the server's `port` says which), over TLS with
    `ssl` (plain HTTP without; a `ReloadingContext` is polled until the server is closed). OSError if the
    address cannot be bound."""
    server = HTTPServer(Probes(registry, readyz=readyz, healthz=healthz, routes=routes), host, port, ssl=ssl)
    await server.start()
    return server
