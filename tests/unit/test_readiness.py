"""/readyz of a replica (kos.apiserver.readiness): not ready while the store does not answer, or while the
watch cache has not reached the revision the store reported `lag_grace` seconds ago; ready again after."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from kos.apiserver.readiness import StoreReadiness
from kos.storage.interface import Unavailable
from kos.testing.apiserver import running_apiserver
from kos.testing.clock import FakeClock


class Store:
    def __init__(self) -> None:
        self.revision = 10
        self.down = False

    async def current_revision(self) -> int:
        if self.down:
            raise Unavailable("etcd: no endpoint answers")
        return self.revision


class Cache:
    revision = 10


async def test_unreachable_store_then_recovery() -> None:
    clock, store, cache = FakeClock(), Store(), Cache()
    r = StoreReadiness(store, cache, clock=clock)  # type: ignore[arg-type]
    await r.check()
    assert r.problem() is None
    store.down = True
    await r.check()
    assert r.problem() == "storage unreachable: etcd: no endpoint answers"
    store.down = False
    await r.check()
    assert r.problem() is None


async def test_a_cache_behind_the_store_for_longer_than_the_grace_is_not_ready() -> None:
    clock, store, cache = FakeClock(), Store(), Cache()
    r = StoreReadiness(store, cache, clock=clock, lag_grace=3.0)  # type: ignore[arg-type]
    store.revision = 20  # the store moved on; the cache has not seen it yet
    await r.check()
    assert r.problem() is None  # within the grace: events are on their way
    await clock.advance(2.0)
    await r.check()
    assert r.problem() is None
    await clock.advance(1.5)
    await r.check()
    problem: Any = r.problem()
    assert problem is not None and "watch cache behind the store: at revision 10, the store was at 20" in problem
    cache.revision = 20  # caught up
    assert r.problem() is None


async def test_the_checks_run_on_the_clock_until_stopped() -> None:
    clock, store, cache = FakeClock(), Store(), Cache()
    r = StoreReadiness(store, cache, clock=clock, interval=1.0)  # type: ignore[arg-type]
    r.start()
    await clock.settle()
    store.down = True
    await clock.advance(1.0)
    assert r.problem() is not None
    await r.stop()
    store.down = False
    await clock.advance(5.0)
    assert r.problem() is not None  # stopped: nothing checks any more


async def test_a_shutdown_delay_turns_readyz_false_while_calls_are_still_served() -> None:
    """kube-apiserver's --shutdown-delay-duration: first not ready (so traffic moves away), then stop. Real time
    is the point here: the server keeps serving for the delay (2 s, far longer than the checks take)."""
    async with (
        running_apiserver(shutdown_delay=2.0, check_cache=False) as server,
        aiohttp.ClientSession(server.url) as http,
    ):
        async with http.get("/readyz") as r:
            assert r.status == 200
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0)
        async with http.get("/readyz", params={"verbose": "1"}) as r:
            assert r.status == 503 and "shutting down" in await r.text()
        async with http.get("/apis/network.example.com/v1alpha1/subnets") as r:
            assert r.status == 200  # still serving during the delay
        assert not stopping.done()
        await asyncio.wait_for(stopping, 10)  # the second stop (leaving the block) does not wait again
