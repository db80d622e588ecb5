"""A TCP proxy that can fall silent: forwards both ways until `silence()`, then drops every byte, closing nothing.

What a client sees of a server that hung, lost its network or sits behind a firewall that drops packets:
the connection stays open and nothing comes back — no FIN, no RST. Tests of how fast a client notices
(kos.http.clientkeepalive, the watch multiplexer's ping, call timeouts, kos.client.failover) put it between
the client and an apiserver. (The proxy's own kernel still answers TCP keepalive probes: only a
timeout above TCP — a call's, a WebSocket ping's — can notice this proxy's silence.)
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["SilentProxy"]


class SilentProxy:
    """Listens on 127.0.0.1 (`port`, chosen by the system) and forwards to `host`:`port` of the target.

    Use as `async with SilentProxy(host, port) as proxy:`; `url` is `http://127.0.0.1:<port>`.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.silent = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def silence(self) -> None:
        """From now on, drop whatever arrives from either side (connections stay open)."""
        self.silent = True

    async def __aenter__(self) -> SilentProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if not self.silent:
                    dst.write(data)
                    await dst.drain()
            if not self.silent:
                dst.close()
