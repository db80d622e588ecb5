"""The Store contract (ARCHITECTURE §5), run against every backend."""

from __future__ import annotations

import asyncio

import pytest

from kos.storage.interface import (
    Compacted,
    Event,
    EventType,
    Guard,
    GuardFailed,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
    Store,
    Unavailable,
)
from kos.testing.wait import eventually


async def collect(store: Store, prefix: str, after: int, n: int, timeout: float = 5.0) -> list[Event]:
    out: list[Event] = []
    it = store.watch(prefix, after)

    async def run() -> None:
        async for batch in it:
            out.extend(batch)
            if len(out) >= n:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await it.aclose()  # type: ignore[attr-defined]
    return out


async def test_create_get_and_revisions(store: Store) -> None:
    r0 = await store.current_revision()
    r1 = await store.create("/a/ns/x", b"one")
    assert r1 > r0
    kv = await store.get("/a/ns/x")
    assert kv is not None and kv.value == b"one" and kv.mod_revision == r1 and kv.create_revision == r1
    assert await store.current_revision() == r1
    assert await store.get("/a/ns/missing") is None


async def test_create_twice_fails(store: Store) -> None:
    await store.create("/a/ns/x", b"one")
    with pytest.raises(KeyExists):
        await store.create("/a/ns/x", b"two")
    kv = await store.get("/a/ns/x")
    assert kv is not None and kv.value == b"one"


async def test_update_is_compare_and_swap(store: Store) -> None:
    r1 = await store.create("/a/ns/x", b"one")
    r2 = await store.update("/a/ns/x", b"two", r1)
    assert r2 > r1
    with pytest.raises(RevisionMismatch) as e:
        await store.update("/a/ns/x", b"three", r1)
    assert e.value.current.mod_revision == r2 and e.value.current.value == b"two"
    kv = await store.get("/a/ns/x")
    assert kv is not None and kv.value == b"two" and kv.create_revision == r1
    with pytest.raises(KeyNotFound):
        await store.update("/a/ns/missing", b"x", 1)


async def test_delete(store: Store) -> None:
    r1 = await store.create("/a/ns/x", b"one")
    with pytest.raises(RevisionMismatch):
        await store.delete("/a/ns/x", r1 + 100)
    d = await store.delete("/a/ns/x", r1)
    assert d.revision > r1 and d.prev.value == b"one"
    assert await store.get("/a/ns/x") is None
    with pytest.raises(KeyNotFound):
        await store.delete("/a/ns/x")
    await store.create("/a/ns/y", b"y")
    d2 = await store.delete("/a/ns/y")
    assert d2.revision > d.revision


async def test_list_prefix_sorted_with_revision(store: Store) -> None:
    for name in ["c", "a", "b"]:
        await store.create(f"/a/ns/{name}", name.encode())
    await store.create("/a/other/z", b"z")
    await store.create("/b/ns/q", b"q")
    rev = await store.create("/a/ns0/w", b"w")  # shares the text prefix "/a/ns" but not "/a/ns/"
    items, lrev = await store.list("/a/ns/")
    assert [kv.key for kv in items] == ["/a/ns/a", "/a/ns/b", "/a/ns/c"]
    assert lrev == rev
    items, _ = await store.list("/a/")
    assert len(items) == 5


async def test_watch_replays_from_revision_in_order(store: Store) -> None:
    r1 = await store.create("/w/ns/a", b"1")
    r2 = await store.update("/w/ns/a", b"2", r1)
    await store.create("/other/ns/b", b"x")
    d = await store.delete("/w/ns/a")
    events = await collect(store, "/w/", r1 - 1, 3)
    assert [(e.type, e.value, e.prev_value) for e in events] == [
        (EventType.ADDED, b"1", None),
        (EventType.MODIFIED, b"2", b"1"),
        (EventType.DELETED, b"2", b"2"),
    ]
    assert [e.revision for e in events] == [r1, r2, d.revision]
    # from a later revision: only what followed it
    events = await collect(store, "/w/", r2, 1)
    assert [e.type for e in events] == [EventType.DELETED]


async def test_watch_sees_live_changes(store: Store) -> None:
    rev = await store.current_revision()
    got: list[Event] = []

    async def run() -> None:
        async for batch in store.watch("/live/", rev):
            got.extend(batch)
            if len(got) >= 50:
                return

    task = asyncio.create_task(run())
    await store.create("/live/ns/000", b"0")
    await eventually(lambda: got, timeout=5)  # the watch has delivered: what follows are live changes
    for i in range(1, 50):
        await store.create(f"/live/ns/{i:03d}", str(i).encode())
    await asyncio.wait_for(task, 5)
    events = got
    assert [e.key for e in events] == [f"/live/ns/{i:03d}" for i in range(50)]
    revs = [e.revision for e in events]
    assert revs == sorted(revs) and len(set(revs)) == 50


async def test_concurrent_creates_exactly_one_wins(store: Store) -> None:
    results = await asyncio.gather(*(store.create("/race/ns/x", str(i).encode()) for i in range(20)),
                                   return_exceptions=True)  # fmt: skip
    wins = [r for r in results if isinstance(r, int)]
    assert len(wins) == 1
    assert all(isinstance(r, KeyExists) for r in results if not isinstance(r, int))


async def test_concurrent_updates_exactly_one_wins(store: Store) -> None:
    r = await store.create("/race/ns/y", b"0")
    results = await asyncio.gather(*(store.update("/race/ns/y", str(i).encode(), r) for i in range(20)),
                                   return_exceptions=True)  # fmt: skip
    assert len([x for x in results if isinstance(x, int)]) == 1
    assert all(isinstance(x, RevisionMismatch) for x in results if not isinstance(x, int))


async def test_watch_from_compacted_revision_is_gone(store: Store) -> None:
    r1 = await store.create("/c/ns/a", b"1")
    r2 = await store.update("/c/ns/a", b"2", r1)
    await store.update("/c/ns/a", b"3", r2)
    await store.compact(r2)
    with pytest.raises(Compacted):
        await collect(store, "/c/", r1 - 1, 1, timeout=2)
    events = await collect(store, "/c/", r2, 1)
    assert [e.value for e in events] == [b"3"]


async def test_missing_key_is_not_found_even_at_revision_zero(store: Store) -> None:
    # etcd reports a missing key's mod revision as 0: "update if at 0" must not create it
    with pytest.raises(KeyNotFound):
        await store.update("/z/ns/missing", b"x", 0)
    with pytest.raises(KeyNotFound):
        await store.delete("/z/ns/missing", 0)
    assert await store.get("/z/ns/missing") is None


async def test_recreated_key_is_added_again(store: Store) -> None:
    r1 = await store.create("/re/ns/a", b"1")
    d = await store.delete("/re/ns/a", r1)
    r3 = await store.create("/re/ns/a", b"2")
    kv = await store.get("/re/ns/a")
    assert kv is not None and kv.create_revision == r3 == kv.mod_revision
    events = await collect(store, "/re/", r1 - 1, 3)
    assert [(e.type, e.value, e.prev_value, e.revision) for e in events] == [
        (EventType.ADDED, b"1", None, r1),
        (EventType.DELETED, b"1", b"1", d.revision),
        (EventType.ADDED, b"2", None, r3),
    ]


async def test_list_larger_than_one_page(store: Store) -> None:
    names = [f"/big/ns/{i:05d}" for i in range(2500)]
    for i in range(0, len(names), 250):
        await asyncio.gather(*(store.create(k, k.encode()) for k in names[i : i + 250]))
    rev = await store.create("/big/other/x", b"x")
    items, lrev = await store.list("/big/ns/")
    assert [kv.key for kv in items] == names
    assert all(kv.value == kv.key.encode() for kv in items)
    assert lrev == rev


async def test_compact_is_clamped_and_idempotent(store: Store) -> None:
    r1 = await store.create("/k/ns/a", b"1")
    r2 = await store.update("/k/ns/a", b"2", r1)
    await store.compact(r2)
    await store.compact(r2)  # again: no error
    await store.compact(r1)  # older than the last compaction: no error
    await store.compact(r2 + 1000)  # beyond the current revision: compacts what exists
    r3 = await store.update("/k/ns/a", b"3", r2)
    events = await collect(store, "/k/", r2, 1)
    assert [(e.type, e.value, e.prev_value, e.revision) for e in events] == [(EventType.MODIFIED, b"3", b"2", r3)]


async def test_close_ends_a_watch_with_unavailable(store: Store) -> None:
    rev = await store.current_revision()
    it = store.watch("/closing/", rev)
    seen: list[Event] = []

    async def run() -> None:
        async for batch in it:
            seen.extend(batch)

    task = asyncio.create_task(run())
    await store.create("/closing/ns/a", b"a")
    await eventually(lambda: seen, timeout=5)  # the watch is running
    await store.close()
    with pytest.raises(Unavailable):
        await asyncio.wait_for(task, 5)


async def test_guards_are_checked_with_the_write(store: Store) -> None:
    """A write with guards applies only if every guarded key is at its revision (0: absent), atomically."""
    ra = await store.create("/g/ns/a", b"a")
    rg = await store.create("/g/ns/guard", b"g")
    # every guard holds: the update applies
    ra2 = await store.update("/g/ns/a", b"a2", ra, [Guard("/g/ns/guard", rg), Guard("/g/ns/absent", 0)])
    # a guarded key moved on: nothing changes, and the failure names the key and its current state
    rg2 = await store.update("/g/ns/guard", b"g2", rg)
    with pytest.raises(GuardFailed) as e:
        await store.update("/g/ns/a", b"a3", ra2, [Guard("/g/ns/guard", rg)])
    assert e.value.guard.key == "/g/ns/guard" and e.value.current is not None
    assert e.value.current.mod_revision == rg2
    # a key that must be absent is present
    with pytest.raises(GuardFailed) as e:
        await store.update("/g/ns/a", b"a3", ra2, [Guard("/g/ns/absent", 0), Guard("/g/ns/guard", 0)])
    assert e.value.guard.key == "/g/ns/guard"
    # a key that must be present is absent
    with pytest.raises(GuardFailed) as e:
        await store.delete("/g/ns/a", ra2, [Guard("/g/ns/absent", rg)])
    assert e.value.guard.key == "/g/ns/absent" and e.value.current is None
    kv = await store.get("/g/ns/a")
    assert kv is not None and kv.value == b"a2" and kv.mod_revision == ra2
    # the key's own precondition is reported before a guard
    with pytest.raises(RevisionMismatch):
        await store.update("/g/ns/a", b"a3", ra, [Guard("/g/ns/guard", rg)])
    with pytest.raises(KeyNotFound):
        await store.delete("/g/ns/missing", None, [Guard("/g/ns/guard", rg)])
    d = await store.delete("/g/ns/a", ra2, [Guard("/g/ns/guard", rg2), Guard("/g/ns/absent", 0)])
    assert d.prev.value == b"a2" and await store.get("/g/ns/a") is None


async def test_guards_serialise_two_writes_that_each_guard_the_other(store: Store) -> None:
    """Two concurrent writes, each guarding the other's key at its current revision: exactly one applies."""
    for _ in range(10):
        rx = await store.create("/gg/ns/x", b"x")
        ry = await store.create("/gg/ns/y", b"y")
        results = await asyncio.gather(
            store.update("/gg/ns/x", b"x2", rx, [Guard("/gg/ns/y", ry)]),
            store.delete("/gg/ns/y", ry, [Guard("/gg/ns/x", rx)]),
            return_exceptions=True,
        )
        assert sum(1 for r in results if not isinstance(r, BaseException)) == 1, results
        assert all(isinstance(r, GuardFailed) for r in results if isinstance(r, BaseException))
        for k in ("/gg/ns/x", "/gg/ns/y"):
            if await store.get(k) is not None:
                await store.delete(k)
