"""The work queue's client-go semantics, as a specification (its timers: tests/unit/test_timers.py)."""

from __future__ import annotations

import asyncio

import pytest

from kos.client.ratelimit import BucketLimiter, ExponentialBackoff, MaxOf, TokenBucket
from kos.client.workqueue import ShutDown, WorkQueue
from kos.testing.clock import FakeClock
from kos.testing.wait import eventually


async def test_a_key_added_many_times_is_processed_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"
    assert len(q) == 0


async def test_a_key_is_never_processed_by_two_workers_at_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    k = await q.get()
    q.add("a")  # changed while being processed
    assert len(q) == 0  # not handed to anyone else ...
    other = asyncio.create_task(q.get())
    q.add("b")  # the other worker is waiting: it takes "b", the only key it may have
    assert await asyncio.wait_for(other, 1) == "b"
    q.done("b")
    q.done(k)  # ... until the first worker is done, then exactly once more
    assert len(q) == 1 and await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")
    assert len(q) == 0


async def test_adds_during_processing_collapse_into_one_reprocessing() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    await q.get()
    for _ in range(3):
        q.add("a")
    q.done("a")
    assert len(q) == 1
    await q.get()
    q.done("a")
    assert len(q) == 0


async def test_concurrent_workers_with_random_adds_never_overlap_on_a_key() -> None:
    q: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    processed: list[int] = []
    violations = 0

    async def worker() -> None:
        nonlocal violations
        while True:
            try:
                k = await q.get()
            except ShutDown:
                return
            if k in active:
                violations += 1
            active.add(k)
            await asyncio.sleep(0)
            processed.append(k)
            active.discard(k)
            q.done(k)

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    for i in range(2000):
        q.add(i % 13)
        if i % 7 == 0:
            await asyncio.sleep(0)
    await eventually(lambda: not len(q) and not q.processing())
    q.shut_down()
    await asyncio.gather(*workers)
    assert violations == 0
    assert set(processed) == set(range(13))


def test_exponential_backoff_200ms_to_8h_and_forget() -> None:
    r = ExponentialBackoff()
    delays = [r.when("k") for _ in range(20)]
    assert delays[:4] == [0.2, 0.4, 0.8, 1.6]
    assert max(delays) == 8 * 3600 and delays[-1] == 8 * 3600
    assert r.num_requeues("k") == 20 and r.num_requeues("other") == 0
    r.forget("k")
    assert r.num_requeues("k") == 0 and r.when("k") == 0.2


async def test_token_bucket_and_max_of() -> None:
    clock = FakeClock()
    b = TokenBucket(10, 2, clock)
    assert [b.delay(), b.delay()] == [0.0, 0.0]
    assert b.delay() == pytest.approx(0.1)
    waiter = asyncio.create_task(b.wait())  # the fourth token: 0.2 s away
    await clock.advance(0.19)
    assert not waiter.done()
    await clock.advance(0.01)
    assert waiter.done()
    await clock.advance(10)
    assert b.delay() == 0.0
    m = MaxOf(ExponentialBackoff(base=0.5), BucketLimiter(1000, 100, clock))
    assert m.when("x") == 0.5 and m.num_requeues("x") == 1


async def test_shutdown_drains_then_stops_workers() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    waiter = asyncio.create_task(q.get())
    assert await waiter == "a"
    blocked = asyncio.create_task(q.get())
    await asyncio.sleep(0)  # one turn of the loop: the task runs into get() and waits there
    q.shut_down()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(blocked, 1)
    q.add("b")  # ignored after shut down
    assert len(q) == 0
