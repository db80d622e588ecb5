"""EtcdStore's failover retries on an injected clock: the retry window and the backoff between rounds.

The endpoints' gRPC stubs are replaced by one that refuses every call as UNAVAILABLE (connection
refused), so no etcd is needed; the fake clock shows that the store backs off between rounds of
attempts (20 ms doubling to 0.5 s) and gives up with `Unavailable` once `retry_timeout` of the clock's
time has passed, not of real time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aetcd import rpc

from kos.storage.etcd import EtcdStore
from kos.storage.interface import Unavailable
from kos.testing.clock import FakeClock


class RefusingKV:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def Range(self, req: Any, *, timeout: float, metadata: Any) -> Any:
        self.calls.append(self.clock.monotonic())
        raise rpc.AioRpcError(rpc.StatusCode.UNAVAILABLE, details="failed to connect to all addresses")


async def test_a_read_retries_with_backoff_until_the_window_of_the_clock_ends() -> None:
    clock = FakeClock()
    store = EtcdStore([("127.0.0.1", 1), ("127.0.0.1", 2)], retry_timeout=3.0, clock=clock)
    kvs = [RefusingKV(clock), RefusingKV(clock)]
    for ep, kv in zip(store._eps, kvs, strict=True):
        ep.kv = kv
    try:
        read = asyncio.create_task(store.get("/a"))
        await clock.settle()
        assert [len(kv.calls) for kv in kvs] == [1, 1]  # one round of both endpoints, then a backoff sleep
        assert not read.done() and clock.pending == 1
        await clock.advance(2.9)
        assert not read.done()
        await clock.advance(0.6)
        with pytest.raises(Unavailable, match="21 attempts in 3 s"):  # 10 rounds of 2, and one when the window ended
            await read
        # rounds at 0, then after 20, 40, 80, 160, 320 ms and 0.5 s each; the last one when the window ends
        start = kvs[0].calls[0]
        assert [round(t - start, 3) for t in kvs[0].calls] == [0, 0.02, 0.06, 0.14, 0.3, 0.62, 1.12, 1.62, 2.12,
                                                               2.62, 3.0]  # fmt: skip
    finally:
        await store.close()
