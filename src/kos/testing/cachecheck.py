"""The watch cache checked against the store, after a test that ran an apiserver.

The cache keeps the entries the registry wrote instead of decoding the stored bytes again, and its
watches send the JSON those entries carry. So after a test, what the cache holds and what its
history sent must be exactly what decoding the stored bytes gives; `running_apiserver` runs this
check when the test's body finishes without an error, so every in-process apiserver a test starts is
checked (docs/architecture.md, "Testing").
"""

from __future__ import annotations

from kos.apiserver.cache import Cacher


async def assert_cache_matches_store(cacher: Cacher) -> None:
    """AssertionError naming the first difference between `cacher` (objects and event history) and its store."""
    await cacher.sync()
    items, _ = await cacher.store.list("/")
    stored = {kv.key: kv for kv in items}
    for plural, cache in cacher.caches.items():
        for key, entry in cache.items.items():
            kv = stored.pop(f"/{plural}/{key}", None)
            assert kv is not None, f"{plural} {key}: in the cache, not in the store"
            fresh = cache.make_entry(key, kv.value, kv.mod_revision)
            assert entry.obj == fresh.obj, f"{plural} {key}: the cache holds {entry.obj!r}, the store {fresh.obj!r}"
            assert entry.json() == fresh.json() and entry.fields == fresh.fields, f"{plural} {key}: encoding"
            assert entry.rev == kv.mod_revision, f"{plural} {key}: at {entry.rev}, stored at {kv.mod_revision}"
    missing = [k for k in stored if k.split("/")[1] in cacher.caches]
    assert not missing, f"not in the cache: {missing}"
    await _assert_history_matches(cacher)


async def _assert_history_matches(cacher: Cacher) -> None:
    """Every event the caches still hold, re-derived from the store's change log (read once, from the oldest)."""
    held = [(plural, cache, ev) for plural, cache in cacher.caches.items() for ev in cache.history
            if ev.cur.rev > cache.floor]  # fmt: skip
    if not held:
        return
    first, last = min(ev.rev for _, _, ev in held), max(ev.rev for _, _, ev in held)
    changes: dict[int, tuple[str, bytes]] = {}
    log = cacher.store.watch("/", first - 1)
    try:
        async for batch in log:
            changes.update((c.revision, (c.key, c.value)) for c in batch)
            if batch[-1].revision >= last:
                break
    finally:
        await log.aclose()  # type: ignore[attr-defined]  # every backend's watch is an async generator
    for plural, cache, ev in held:
        assert changes.get(ev.rev, ("", b""))[0] == f"/{plural}/{ev.cur.key}", f"{plural} event at {ev.rev}: not logged"
        fresh = cache.make_entry(ev.cur.key, changes[ev.rev][1], ev.rev)
        assert ev.cur.obj == fresh.obj and ev.cur.json() == fresh.json(), f"{plural} event at {ev.rev}"
