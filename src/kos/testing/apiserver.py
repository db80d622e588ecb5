"""An in-process apiserver on 127.0.0.1:<free port>, for tests and benchmarks.

`running_apiserver` checks the watch cache against the store when the body it wraps finishes without
an error (`kos.testing.cachecheck`), so every test that starts an apiserver this way is checked;
benchmarks, whose stores are large, pass `check_cache=False`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ssl as _ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

from kos.apiserver.auth.gate import Gate
from kos.apiserver.server import APIServer, Settings
from kos.http.tls import ReloadingContext, ServingFiles
from kos.testing.cachecheck import assert_cache_matches_store
from kos.util.clock import REAL_CLOCK, Clock


@contextlib.asynccontextmanager
async def running_apiserver(
    storage: str = "memory://",
    *,
    clock: Clock = REAL_CLOCK,
    check_cache: bool = True,
    ssl: _ssl.SSLContext | ReloadingContext | None = None,
    tls: ServingFiles | None = None,
    gate: Gate | None = None,
    **settings: Any,
) -> AsyncIterator[APIServer]:
    """An apiserver with `Settings` overridden by `settings`, on `clock`, serving HTTPS if `ssl` (a context) or
    `tls` (files, reloaded when they change, polled on `clock`) is given, authenticating and authorizing with
    `gate` (insecure if None); stopped afterwards.

    Unless `check_cache` is false, the watch cache is checked against the store (AssertionError) after a body
    that ended without an error, before the server stops.
    """
    s = dataclasses.replace(Settings(storage=storage, host="127.0.0.1", port=0), **settings)
    if tls is not None:
        ssl = ReloadingContext(tls, clock=clock)
    server = APIServer(s, clock=clock, ssl=ssl, gate=gate)
    await server.start()
    try:
        yield server
        if check_cache:
            assert server.cacher is not None
            await assert_cache_matches_store(server.cacher)
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
