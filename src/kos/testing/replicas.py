"""Several in-process apiservers over one store, as replicas over one etcd cluster (issue 13).

Each has its own watch cache fed by the shared store's watch; stopping one leaves the store and the
others serving. Client failover tests (kos.client.failover) connect to all of them.
"""

from __future__ import annotations

import contextlib
import ssl as _ssl
from collections.abc import AsyncIterator
from typing import Any

from kos.apiserver.server import APIServer, Settings
from kos.storage.url import open_store

__all__ = ["running_replicas"]


@contextlib.asynccontextmanager
async def running_replicas(
    n: int = 2, storage: str = "memory://", *, ssl: _ssl.SSLContext | None = None, **settings: Any
) -> AsyncIterator[list[APIServer]]:
    """`n` started apiservers on loopback ports over one store opened from `storage` (Settings overridden
    by `settings`), serving HTTPS with `ssl` if given; every one still running is stopped afterwards
    (stopping twice is harmless), then the store is closed."""
    store = await open_store(storage)
    servers = [APIServer(Settings(storage=storage, host="127.0.0.1", port=0, **settings), store=store, ssl=ssl)
               for _ in range(n)]  # fmt: skip
    try:
        for s in servers:
            await s.start()
        yield servers
    finally:
        for s in servers:
            await s.stop()
        await store.close()
