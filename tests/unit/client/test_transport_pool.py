"""The lean client transport's pool: a caller that gives up leaves no slot or waiter behind (issue 10, item 4).

Same kind of fault as the apiserver's revision waiters: a registry of waiters or a
counter of slots that a timeout or cancellation does not clean.
"""

from __future__ import annotations

import asyncio
import contextlib

from kos.http.clientpool import HTTPPool
from kos.testing.wait import eventually


async def _idle_server() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_cancelled_waiters_and_connects_free_their_place() -> None:
    server, port = await _idle_server()
    pool = HTTPPool(f"http://127.0.0.1:{port}", limit=2)
    try:
        # two requests hold both connections (the server never answers); 50 more wait, then give up
        busy = [asyncio.create_task(pool.request("GET", "/", timeout=30)) for _ in range(2)]
        waiting = [asyncio.create_task(pool.request("GET", "/", timeout=30)) for _ in range(50)]
        await eventually(lambda: len(pool._waiters) == 50, timeout=5)
        for t in waiting:
            t.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        assert len(pool._waiters) == 0
        for t in busy:
            t.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
        assert pool._count == 0
        # connects cancelled mid-way give their slot back
        for _ in range(5):
            t = asyncio.create_task(pool.request("GET", "/", timeout=30))
            await asyncio.sleep(0)
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)
        assert pool._count == 0
    finally:
        await pool.close()
        server.close()
