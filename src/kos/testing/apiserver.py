"""An in-process apiserver on 127.0.0.1:<free port>, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

from kos.apiserver.server import APIServer, Settings


@contextlib.asynccontextmanager
async def running_apiserver(storage: str = "memory://", **settings: Any) -> AsyncIterator[APIServer]:
    s = dataclasses.replace(Settings(storage=storage, host="127.0.0.1", port=0), **settings)
    server = APIServer(s)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.contextmanager
def cache_lagging(server: APIServer, revision: int) -> Iterator[None]:
    """Make `server`'s store report `revision` (at least) as its current one, as a shared etcd would after
    another apiserver's writes this server's cache has not received yet.

    A client's resourceVersion up to `revision` is then waited for (up to 3 s) rather than refused at once
    as one from a replaced store; tests of waiting requests use it. Consistent reads wait for it too.
    """
    store = server.store
    real = store.current_revision

    async def ahead() -> int:
        return max(await real(), revision)

    store.current_revision = ahead  # type: ignore[method-assign]
    try:
        yield
    finally:
        del store.current_revision
