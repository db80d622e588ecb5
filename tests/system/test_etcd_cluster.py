"""EtcdStore against a real 3-member etcd cluster: failover when members die.

* The leader is killed with SIGKILL while writers run: every write still completes
  (the store fails over, within its retry window), and a watch running across the
  kill delivers every acknowledged write exactly once, in order.
* A watch resumed from the last revision seen before the kill misses nothing.
* With quorum lost, writes fail with a clear `Unavailable`; they work again once a
  member comes back.
* A write whose reply is lost (the connection drops after etcd applied it, or
  before) is retried as the same compare-and-swap and reported correctly, never
  applied twice (single member; the lost reply is simulated on the client side).
* A dead endpoint is skipped; with no reachable endpoint at all, a prompt, clear
  `Unavailable` names every endpoint.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aetcd import rpc

from kos.storage.etcd import EtcdStore
from kos.storage.interface import Event, EventType, KeyExists, KeyNotFound, RevisionMismatch, Unavailable
from kos.testing.etcd import EtcdProcess
from kos.testing.wait import eventually

needs_etcd = pytest.mark.skipif(
    shutil.which("etcd") is None,
    reason="etcd is not on PATH (make test installs etcd-server when run as root)",
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdProcess]:
    c = EtcdProcess.cluster(tmp_path, members=3)
    try:
        yield c
    finally:
        c.stop()


async def _write_until_done(store: EtcdStore, key: str, value: bytes, window: float = 20.0) -> tuple[int, float]:
    """Create `key`, retrying through Unavailable for up to `window` s: (revision, seconds taken)."""
    t0 = time.monotonic()
    ambiguous = False
    while True:
        try:
            return await store.create(key, value), time.monotonic() - t0
        except KeyExists:
            assert ambiguous, f"{key} exists although no earlier attempt could have created it"
            kv = await store.get(key)
            assert kv is not None and kv.value == value
            return kv.mod_revision, time.monotonic() - t0
        except Unavailable:
            ambiguous = True
            if time.monotonic() - t0 > window:
                raise
            await asyncio.sleep(0.1)


async def _watch_into(store: EtcdStore, prefix: str, after: int, out: list[Event], until: asyncio.Event) -> None:
    async for batch in store.watch(prefix, after):
        out.extend(batch)
        if until.is_set():
            return


@needs_etcd
@pytest.mark.etcd
@pytest.mark.system
@pytest.mark.parametrize("client_on", ["leader", "follower"])
async def test_writes_and_watch_survive_leader_kill(cluster: EtcdProcess, client_on: str) -> None:
    lead = cluster.leader()
    others = [i for i in range(cluster.members) if i != lead]
    # the store talks to its first endpoint until that fails: put the leader (or a follower) first
    order = [lead, *others] if client_on == "leader" else [*others, lead]
    store = await EtcdStore.open([cluster.endpoints[i] for i in order], prefix="/sys", retry_timeout=20)
    try:
        rev0 = await store.current_revision()
        seen: list[Event] = []
        stop_watch = asyncio.Event()
        watcher = asyncio.create_task(_watch_into(store, "/items/", rev0, seen, stop_watch))

        acked: dict[str, int] = {}
        latencies: list[float] = []
        killed = asyncio.Event()
        seen_at_kill: list[int] = []

        async def writer(w: int) -> None:
            for i in range(120):
                if i == 40 and w == 0:
                    target = max(acked.values(), default=rev0)  # let the watcher catch up, then pull the plug
                    await eventually(lambda t=target: bool(seen) and seen[-1].revision >= t, timeout=10)
                    seen_at_kill.append(seen[-1].revision if seen else rev0)
                    await asyncio.to_thread(cluster.kill, lead)
                    killed.set()
                key = f"/items/ns/w{w}-{i:04d}"
                rev, took = await _write_until_done(store, key, f"{w}:{i}".encode())
                acked[key] = rev
                latencies.append(took)

        await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(4))), 60)
        assert killed.is_set() and not cluster.running(lead)
        assert len(acked) == 480
        assert max(latencies) < 15, f"a write took {max(latencies):.1f} s across the leader kill"

        # the watch that ran across the kill delivered every acknowledged write, once, in order
        final = max(acked.values())
        deadline = time.monotonic() + 15
        while (not seen or seen[-1].revision < final) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop_watch.set()
        await store.create("/items/ns/zz-stop", b"")  # wakes the watcher so it can return
        await asyncio.wait_for(watcher, 10)
        revs = [e.revision for e in seen]
        assert revs == sorted(set(revs)), "watch events repeated or out of order"
        by_key = {e.key: e for e in seen}
        for key, rev in acked.items():
            assert key in by_key and by_key[key].revision == rev and by_key[key].type == EventType.ADDED

        # a watch resumed from the last revision seen before the kill misses nothing
        mid = seen_at_kill[0]
        resumed: list[Event] = []

        async def resume() -> None:
            async for batch in store.watch("/items/", mid):
                resumed.extend(batch)
                if resumed[-1].revision >= seen[-1].revision:
                    return

        await asyncio.wait_for(resume(), 15)
        expected = [(e.type, e.key, e.value, e.revision) for e in seen if e.revision > mid]
        assert [(e.type, e.key, e.value, e.revision) for e in resumed] == expected
        assert {e.key for e in resumed} >= {k for k, r in acked.items() if r > mid}

        items, _ = await store.list("/items/")
        assert {kv.key: kv.mod_revision for kv in items if kv.key in acked} == acked
    finally:
        await store.close()

    # the killed member comes back with its data and catches up on what it missed
    await asyncio.to_thread(cluster.restart, lead)
    only_it = await EtcdStore.open([cluster.endpoints[lead]], prefix="/sys")
    try:
        deadline = time.monotonic() + 10
        while True:
            kv = await only_it.get("/items/ns/w3-0119")
            if kv is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert kv is not None and kv.value == b"3:119"
    finally:
        await only_it.close()


@needs_etcd
@pytest.mark.etcd
@pytest.mark.system
async def test_quorum_loss_is_unavailable_until_a_member_returns(cluster: EtcdProcess) -> None:
    store = await EtcdStore.open(cluster.endpoints, prefix="/q", request_timeout=1, retry_timeout=3)
    try:
        r1 = await store.create("/q/ns/a", b"1")
        lead = cluster.leader()
        follower = next(i for i in range(3) if i != lead)
        cluster.kill(follower)
        r2 = await store.update("/q/ns/a", b"2", r1)  # one member down: no interruption
        cluster.kill(lead)
        t0 = time.monotonic()
        with pytest.raises(Unavailable) as e:
            await store.update("/q/ns/a", b"3", r2)
        assert time.monotonic() - t0 < 10
        assert "cannot reach etcd" in str(e.value) or "may have been applied" in str(e.value)
        await asyncio.to_thread(cluster.restart, follower)
        deadline = time.monotonic() + 20
        while True:
            try:
                kv = await store.get("/q/ns/a")
                break
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
        assert kv is not None and kv.value in (b"2", b"3")
        await store.update("/q/ns/a", b"4", kv.mod_revision)
    finally:
        await store.close()


class _LostReply:
    """Wraps a KV stub: the next Txn is sent (or not, when `applied` is false) and then fails
    the way a dropped connection does, so the caller cannot know whether it was applied."""

    def __init__(self, real: Any, *, applied: bool) -> None:
        self.real = real
        self.applied = applied
        self.armed = True

    async def Txn(self, req: Any, **kw: Any) -> Any:
        if self.armed:
            self.armed = False
            if self.applied:
                await self.real.Txn(req, **kw)
            raise rpc.AioRpcError(rpc.StatusCode.UNAVAILABLE, details="Stream removed (Socket closed)")
        return await self.real.Txn(req, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def single(tmp_path: Path) -> Iterator[EtcdProcess]:
    c = EtcdProcess.start(tmp_path)
    try:
        yield c
    finally:
        c.stop()


@needs_etcd
@pytest.mark.etcd
@pytest.mark.system
@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
async def test_write_with_lost_reply_is_resolved(single: EtcdProcess, applied: bool) -> None:
    store = await EtcdStore.open(single.endpoints, prefix="/lost")
    ep = store._eps[0]
    real = ep.kv

    def lose_next() -> None:
        ep.kv = _LostReply(real, applied=applied)

    try:
        lose_next()
        r1 = await store.create("/t/ns/a", b"1")
        kv = await store.get("/t/ns/a")
        assert kv is not None and kv.value == b"1" and kv.mod_revision == r1 == kv.create_revision

        lose_next()
        r2 = await store.update("/t/ns/a", b"2", r1)
        kv = await store.get("/t/ns/a")
        assert kv is not None and kv.value == b"2" and kv.mod_revision == r2 > r1

        # a lost race is still a conflict, not mistaken for our own write
        lose_next()
        with pytest.raises(RevisionMismatch):
            await store.update("/t/ns/a", b"3", r1)
        lose_next()
        with pytest.raises(KeyExists):
            await store.create("/t/ns/a", b"other")

        lose_next()
        if applied:  # the key is gone but we cannot know it was us: say so
            with pytest.raises(Unavailable, match="may have been applied"):
                await store.delete("/t/ns/a", r2)
        else:
            d = await store.delete("/t/ns/a", r2)
            assert d.prev.value == b"2" and d.revision > r2
        assert await store.get("/t/ns/a") is None
        with pytest.raises(KeyNotFound):
            await store.delete("/t/ns/a")

        # every write above was applied exactly once: one event each, in order
        events: list[Event] = []
        async for batch in store.watch("/t/", r1 - 1):
            events.extend(batch)
            if len(events) >= 3:
                break
        assert [(e.type, e.value) for e in events] == [
            (EventType.ADDED, b"1"),
            (EventType.MODIFIED, b"2"),
            (EventType.DELETED, b"2"),
        ]
        assert await store.current_revision() == events[-1].revision
    finally:
        ep.kv = real
        await store.close()


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


@needs_etcd
@pytest.mark.etcd
@pytest.mark.system
async def test_a_dead_endpoint_is_skipped(single: EtcdProcess) -> None:
    store = await EtcdStore.open([("127.0.0.1", _dead_port()), *single.endpoints], prefix="/skip")
    try:
        rev = await store.create("/s/ns/a", b"1")
        kv = await store.get("/s/ns/a")
        assert kv is not None and kv.mod_revision == rev
    finally:
        await store.close()


async def test_no_reachable_endpoint_is_a_clear_unavailable() -> None:
    eps = [("127.0.0.1", _dead_port()), ("127.0.0.1", _dead_port())]
    t0 = time.monotonic()
    with pytest.raises(Unavailable) as e:
        await EtcdStore.open(eps, connect_timeout=1)
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    assert all(f"127.0.0.1:{p}" in msg for _, p in eps), msg
    assert "cannot reach etcd" in msg
