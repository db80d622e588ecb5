"""Every timer on the injected clock, driven by the fake one: seconds of kos time in milliseconds of real time.

Work-queue delays, per-item backoff and queue durations; a watch's timeout and its bookmarks; waiting for the
watch cache; the garbage collector's and address protection's retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from kos.api import codec
from kos.api.errors import ServiceUnavailable, StatusError, Timeout
from kos.api.meta import ObjectMeta
from kos.api.resources import NETWORK_ATTACHMENTS
from kos.api.selectors import parse_field_selector
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.apiserver import bookmarks
from kos.apiserver.address_protection import AddressBook, LockDeletionRule, ProtectionController
from kos.apiserver.cache import Cacher
from kos.apiserver.gc import GarbageCollector
from kos.apiserver.registry import Registry, WatchOptions
from kos.apiserver.strategy import for_plural
from kos.apiserver.watchers import Watcher
from kos.client.ratelimit import ExponentialBackoff
from kos.client.workqueue import WorkQueue
from kos.storage.memory import MemoryStore
from kos.testing.clock import FakeClock

NA = NETWORK_ATTACHMENTS.plural


# --- the work queue ---------------------------------------------------------------------------------


async def test_add_after_fires_at_its_time_and_an_earlier_add_wins() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("late", 5)
    q.add_after("x", 10)
    q.add_after("x", 1)  # an earlier time replaces the later one
    q.add_after("x", 3)  # a later one does not
    await clock.advance(0.999)
    assert len(q) == 0
    await clock.advance(0.001)
    assert len(q) == 1 and await q.get() == "x"
    await clock.advance(3.9)
    assert len(q) == 0  # "x" was not added again at 3 or 10 ...
    await clock.advance(0.1)
    assert await q.get() == "late"
    await clock.advance(100)
    assert len(q) == 0 and clock.pending == 0  # ... nor later


async def test_rate_limited_adds_back_off_per_item_and_forget_resets() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(rate_limiter=ExponentialBackoff(base=0.2, cap=1.0), clock=clock)
    waits = []
    for _ in range(5):
        q.add_rate_limited("a")
        start = clock.monotonic()
        while not len(q):
            await clock.advance(0.1)
        waits.append(round(clock.monotonic() - start, 3))
        q.done(await q.get())
    assert waits == [0.2, 0.4, 0.8, 1.0, 1.0]  # 200 ms doubling, capped
    q.add_rate_limited("b")  # another item has its own backoff
    await clock.advance(0.2)
    assert await q.get() == "b"
    q.forget("a")
    q.add_rate_limited("a")
    await clock.advance(0.2)
    assert await q.get() == "a"


@dataclass
class Durations:
    queued: list[float] = field(default_factory=list)
    worked: list[float] = field(default_factory=list)

    def added(self) -> None: ...

    def depth(self, n: int) -> None: ...

    def retried(self) -> None: ...

    def queued_for(self, seconds: float) -> None:
        self.queued.append(seconds)

    def worked_for(self, seconds: float) -> None:
        self.worked.append(seconds)


async def test_queue_durations_are_measured_on_the_clock() -> None:
    clock = FakeClock()
    m = Durations()
    q: WorkQueue[str] = WorkQueue(metrics=m, clock=clock)
    q.add("a")
    await clock.advance(3)
    await q.get()
    await clock.advance(2)
    assert q.oldest_processing_age() == 2
    q.done("a")
    assert (m.queued, m.worked) == ([3.0], [2.0])


# --- watches ----------------------------------------------------------------------------------------


@dataclass
class Apiserver:
    clock: FakeClock
    store: MemoryStore
    cacher: Cacher
    registry: Registry

    async def create(self, name: str, node: str) -> int:
        obj = NetworkAttachment(
            metadata=ObjectMeta(name=name, namespace="ns", uid=name), spec=NetworkAttachmentSpec(node=node, subnet="s")
        )
        rev = await self.store.create(f"/{NA}/ns/{name}", codec.encode(obj))
        await self.cacher.wait_for(rev)
        return rev

    async def watch(self, node: str, *, bookmarks: bool = True) -> Watcher:
        opts = WatchOptions(field_selector=parse_field_selector(f"spec.node={node}"), resource_version="0",
                            allow_bookmarks=bookmarks)  # fmt: skip
        return await self.registry.watch("ns", opts)


@pytest.fixture
async def api() -> AsyncIterator[Apiserver]:
    clock = FakeClock()
    store = MemoryStore()
    cacher = Cacher(store, history=100, clock=clock)
    await cacher.start()
    yield Apiserver(clock, store, cacher, Registry(NETWORK_ATTACHMENTS, for_plural(NA), store, cacher, clock))
    await cacher.stop()


async def test_a_watch_ends_at_its_timeout_unless_cancelled(api: Apiserver) -> None:
    w, kept = await api.watch("n1"), await api.watch("n2")
    w.expire_after(30)
    kept.expire_after(30).cancel()
    await api.clock.advance(29.9)
    assert not w.closed
    await api.clock.advance(0.1)
    assert w.closed and w.close_reason == "" and not kept.closed
    ended: list[str] = []
    kept.expire_after(5, lambda: ended.append("mux"))  # the multiplexer ends its stream instead
    await api.clock.advance(5)
    assert ended == ["mux"] and not kept.closed


def lines(w: Watcher) -> list[bytes]:
    return [ln.split(b",", 1)[0] for ln in w.buffer]


async def test_bookmarks_go_to_watches_idle_for_the_interval(api: Apiserver) -> None:
    quiet, busy, unwilling = (
        await api.watch("quiet"),
        await api.watch("busy"),
        await api.watch("quiet", bookmarks=False),
    )
    task = asyncio.create_task(bookmarks.run(api.cacher, {NA: api.registry}, 10.0, api.clock))
    await api.create("noise", "elsewhere")  # the cache moves past every watch's revision
    await api.clock.advance(9)
    busy.take()  # busy sends at 9 s: its idle time starts again
    await api.create("b1", "busy")
    busy.take()
    await api.clock.advance(1)  # the tick at 10 s: quiet has been idle 10 s, busy 1 s
    assert lines(quiet) == [b'{"type":"BOOKMARK"'] and busy.buffer == [] and unwilling.buffer == []
    assert quiet.last_rev == api.cacher.revision
    await api.create("noise2", "elsewhere")
    await api.clock.advance(10)  # busy is idle 10 s and behind now; quiet still holds its unsent bookmark
    assert lines(busy) == [b'{"type":"BOOKMARK"'] and busy.last_rev == api.cacher.revision
    assert len(quiet.buffer) == 1 and unwilling.buffer == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_send_due_counts_and_skips_watches_at_the_current_revision(api: Apiserver) -> None:
    w = await api.watch("n1")
    now = api.clock.monotonic()
    assert bookmarks.send_due(api.cacher, {NA: api.registry}, 10.0, now + 60) == 0  # nothing new to report
    await api.create("x", "n2")
    assert bookmarks.send_due(api.cacher, {NA: api.registry}, 10.0, now + 9) == 0
    assert bookmarks.send_due(api.cacher, {NA: api.registry}, 10.0, now + 10) == 1
    assert w.last_rev == api.cacher.revision


# --- waiting for the watch cache --------------------------------------------------------------------


async def test_waiting_for_a_revision_times_out_on_the_clock(api: Apiserver) -> None:
    waiting = asyncio.create_task(api.cacher.wait_for(api.cacher.revision + 1000, timeout=3.0))
    await api.clock.advance(2.9)
    assert not waiting.done() and api.cacher.waiting == 1
    await api.clock.advance(0.1)
    with pytest.raises(Timeout) as e:
        await waiting
    assert "ResourceVersionTooLarge" in str(e.value.to_status())
    assert api.cacher.waiting == 0


async def test_a_revision_that_arrives_in_time_cancels_the_timer(api: Apiserver) -> None:
    rev = await api.store.current_revision()
    waiting = asyncio.create_task(api.cacher.wait_for(rev + 1, timeout=3.0))
    await api.clock.settle()
    assert api.clock.pending == 1
    await api.create("a", "n1")
    await asyncio.wait_for(waiting, 5)
    assert api.clock.pending == 0


# --- background retries -----------------------------------------------------------------------------


async def test_the_garbage_collector_retries_a_failed_step_after_its_delay(api: Apiserver) -> None:
    gc = GarbageCollector(api.cacher, {NA: api.registry}, clock=api.clock, retry_delay=0.5)
    attempts: list[float] = []

    async def process(ref: tuple[str, str]) -> None:
        attempts.append(api.clock.monotonic())
        if len(attempts) == 1:
            raise ServiceUnavailable("storage is unavailable")

    gc._process = process  # type: ignore[method-assign]
    gc.start()
    gc.queue.put((NA, "ns/a"))
    await api.clock.advance(0.49)
    assert len(attempts) == 1
    await api.clock.advance(0.01)
    assert attempts == [attempts[0], attempts[0] + 0.5]
    await gc.stop()


async def test_address_protection_retries_after_a_second_and_resyncs(api: Apiserver) -> None:
    rule = LockDeletionRule(AddressBook(api.cacher, api.store))
    pc = ProtectionController(api.cacher, api.registry, rule, resync=10.0, retry_delay=1.0, clock=api.clock)
    looked: list[tuple[str, float]] = []

    async def complete(key: str) -> None:
        looked.append((key, api.clock.monotonic()))
        if len(looked) == 1:
            raise StatusError("a lost race")

    pc._complete = complete  # type: ignore[method-assign]
    pc.start()
    t0 = api.clock.monotonic()
    pc.queue.put("ns/lock")
    await api.clock.advance(0.99)
    assert looked == [("ns/lock", t0)]
    await api.clock.advance(0.01)
    assert looked == [("ns/lock", t0), ("ns/lock", t0 + 1)]
    pc.protected.add("ns/held")
    await api.clock.advance(9)
    assert looked[-1] == ("ns/held", t0 + 10)
    await pc.stop()
