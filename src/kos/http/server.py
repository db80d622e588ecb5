"""A listening socket serving an `Application` with `HTTPProtocol`, over TCP or TLS, and its orderly stop.

TLS is a fixed `ssl.SSLContext` or a `kos.http.tls.ReloadingContext`, whose files the server polls from its
start to its close, so that every listener rotates its certificate the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import weakref

from kos.http.limits import HTTPLimits
from kos.http.messages import Application
from kos.http.protocol import HTTPProtocol
from kos.http.tls import ReloadingContext


class HTTPServer:
    """Serves `app` on `host:port` (port 0: any; `port` tells which once started); TLS when `ssl` is given
    (a `ReloadingContext` is polled while the server runs)."""

    def __init__(
        self,
        app: Application,
        host: str,
        port: int,
        *,
        limits: HTTPLimits | None = None,
        ssl: ssl.SSLContext | ReloadingContext | None = None,
        backlog: int = 1024,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits or HTTPLimits()
        self.ssl = ssl
        self.backlog = backlog
        self.connections: weakref.WeakSet[HTTPProtocol] = weakref.WeakSet()
        self._listener: asyncio.Server | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl is not None else "http"

    async def start(self) -> None:
        """Listen; OSError if the address cannot be bound."""
        app, limits, conns, tls = self.app, self.limits, self.connections, self.ssl
        listen = tls.context if isinstance(tls, ReloadingContext) else tls

        def protocol() -> HTTPProtocol:
            p = HTTPProtocol(app, limits)
            conns.add(p)
            return p

        self._listener = await asyncio.get_running_loop().create_server(
            protocol, self.host, self.port, backlog=self.backlog, reuse_address=True, ssl=listen,
            # a TLS handshake is part of the head's time (Go's ReadHeaderTimeout covers it); asyncio's default is 60 s
            ssl_handshake_timeout=limits.header_timeout if listen is not None else None,
        )  # fmt: skip
        if isinstance(tls, ReloadingContext):
            tls.start()
        sockets = self._listener.sockets
        if sockets:  # learn the port when asked for port 0
            self.port = sockets[0].getsockname()[1]

    def close(self) -> None:
        """Refuse new connections; close each open one once the answer it is writing is done."""
        if self._listener is not None:
            self._listener.close()
        if isinstance(self.ssl, ReloadingContext):
            self.ssl.stop()
        for p in list(self.connections):
            p.close()

    async def stop(self, timeout: float) -> None:
        """`close`, wait up to `timeout` seconds for answers being written (streams must be ended by their
        owners), then abort whatever is still open."""
        self.close()
        waits = [p.answered() for p in self.connections]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), timeout)
        for p in list(self.connections):
            p.abort()
        self.connections.clear()
