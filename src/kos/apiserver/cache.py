"""The watch cache: every object in memory, fed in revision order by one store watch.

As kube-apiserver's cacher does, the server lists and watches from memory, not
from the store. One watch on the whole store feeds a `ResourceCache` per kind;
each holds the live objects (sorted by key, for paged lists), secondary indexes
on the selectable fields the agents and controllers filter by, a bounded history
of recent events (to resume watches and to rebuild a past snapshot for paged
lists), and the watcher index. Every object is decoded once and encoded once,
and the encoded bytes are shared by every list and watcher that sends it.

Consistency: a read that must not be stale (a list with no resourceVersion)
first asks the store for its current revision and waits until the cache has
applied it (`Cacher.sync`), so it never returns data older than a write already
acknowledged to any client.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from sortedcontainers import SortedDict

from kos.api import codec, errors, watchframe
from kos.api.errors import Expired, ServiceUnavailable, Timeout
from kos.api.resources import ALL as ALL_RESOURCES
from kos.api.resources import Resource
from kos.api.selectors import FieldSelector, LabelSelector
from kos.apiserver.watchers import Watcher, WatcherIndex
from kos.storage.interface import Compacted, Event, EventType, Store, StoreError
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger
from kos.util.tasks import cancel_and_wait

log = get_logger(__name__)

ADDED, MODIFIED, DELETED, BOOKMARK = b"ADDED", b"MODIFIED", b"DELETED", b"BOOKMARK"


class Entry:
    """One version of one object: decoded once, its selectable fields computed once, encoded at most once."""

    __slots__ = ("_json", "fields", "key", "labels", "namespace", "obj", "rev", "uid")

    def __init__(self, key: str, obj: Any, rev: int, fields: dict[str, str]) -> None:
        self.key = key
        self.obj = obj
        self.rev = rev
        self.fields = fields
        meta = obj.metadata
        self.labels: dict[str, str] = meta.labels
        self.namespace: str = meta.namespace
        self.uid: str = meta.uid
        self._json: bytes | None = None

    def json(self) -> bytes:
        j = self._json
        if j is None:
            j = self._json = codec.encode(self.obj)
        return j

    def at_revision(self, rev: int) -> Entry:
        """The same content stamped with another resourceVersion (for DELETED events)."""
        return Entry(self.key, codec.with_resource_version(self.obj, rev), rev, self.fields)


class CacheEvent:
    __slots__ = ("_deleted", "_lines", "cur", "prev", "rev", "same_selection", "type")

    def __init__(self, type: bytes, rev: int, cur: Entry, prev: Entry | None) -> None:
        self.type = type
        self.rev = rev
        self.cur = cur
        self.prev = prev
        # Whether every watcher's verdict is the same before and after (selectable fields and labels unchanged):
        # most updates only touch other fields, and then each watcher is evaluated once, not twice.
        self.same_selection = prev is not None and prev.fields == cur.fields and prev.labels == cur.labels
        self._deleted: Entry | None = cur if type == DELETED else None
        self._lines: dict[bytes, bytes] = {}

    def deleted_entry(self) -> Entry:
        """What a watcher that stops matching receives: the previous content at this event's revision."""
        d = self._deleted
        if d is None:
            assert self.prev is not None
            d = self._deleted = self.prev.at_revision(self.rev)
        return d

    def line(self, typ: bytes) -> bytes:
        ln = self._lines.get(typ)
        if ln is None:
            entry = self.deleted_entry() if typ == DELETED else self.cur
            ln = self._lines[typ] = watchframe.frame(typ, entry.json())
        return ln


def event_for(w: Watcher, ev: CacheEvent) -> bytes | None:
    """The event type `w` should see for `ev` (Kubernetes' selector-transition semantics), or None."""
    cur = ev.cur
    if ev.type == DELETED:
        return DELETED if w.matches(cur.namespace, cur.labels, cur.fields) else None
    now = w.matches(cur.namespace, cur.labels, cur.fields)
    prev = ev.prev
    if ev.same_selection:
        return MODIFIED if now else None
    before = prev is not None and w.matches(prev.namespace, prev.labels, prev.fields)
    if now:
        return MODIFIED if before else ADDED
    return DELETED if before else None


def deliver(w: Watcher, ev: CacheEvent) -> None:
    typ = event_for(w, ev)
    if typ is None:
        return
    if w.render is not None:
        entry = ev.deleted_entry() if typ == DELETED else ev.cur
        w.push(w.render(typ.decode(), entry), ev.rev)
    else:
        w.push(ev.line(typ), ev.rev)


class ResourceCache:
    def __init__(self, resource: Resource, *, history: int) -> None:
        self.resource = resource
        self.items: SortedDict = SortedDict()  # "ns/name" -> Entry
        self.index: dict[str, dict[str, set[str]]] = {
            f: {} for f in resource.indexed if f not in ("metadata.name", "metadata.namespace")
        }
        self.history: list[CacheEvent] = []
        self.history_revs: list[int] = []
        self.capacity = history
        self.floor = 0  # every event with rev > floor is in history
        self.watchers = WatcherIndex(resource)
        self.derived: dict[str, tuple[Callable[[Any], str], dict[str, set[str]]]] = {}
        self._decoder = codec.decoder(resource.object_type)
        self._getters = resource.selectable

    # --- building entries --------------------------------------------------------------------

    def make_entry(self, key: str, value: bytes, rev: int) -> Entry:
        obj = codec.with_resource_version(self._decoder.decode(value), rev)
        return Entry(key, obj, rev, {n: g(obj) for n, g in self._getters.items()})

    def entry_for(self, obj: Any, rev: int) -> Entry:
        obj = codec.with_resource_version(obj, rev)
        key = f"{obj.metadata.namespace}/{obj.metadata.name}"
        return Entry(key, obj, rev, {n: g(obj) for n, g in self._getters.items()})

    # --- applying changes --------------------------------------------------------------------

    def _index_add(self, e: Entry) -> None:
        for f, idx in self.index.items():
            idx.setdefault(e.fields[f], set()).add(e.key)

    def _index_remove(self, e: Entry) -> None:
        for f, idx in self.index.items():
            s = idx.get(e.fields[f])
            if s is not None:
                s.discard(e.key)
                if not s:
                    del idx[e.fields[f]]

    def add_derived_index(self, name: str, value: Callable[[Any], str]) -> dict[str, set[str]]:
        """Index the live objects by `value(obj)` (entries whose value is "" are left out), kept current with
        every change from now on; the index (value → keys), for lookups. For rules that need a lookup no
        selectable field gives (the NAs showing one address of one VNI)."""
        idx: dict[str, set[str]] = {}
        self.derived[name] = (value, idx)
        self._derived_fill(value, idx)
        return idx

    def _derived_fill(self, value: Callable[[Any], str], idx: dict[str, set[str]]) -> None:
        idx.clear()  # in place: its users hold it
        for k, e in self.items.items():
            v = value(e.obj)
            if v:
                idx.setdefault(v, set()).add(k)

    def _derived_update(self, key: str, prev: Entry | None, cur: Entry | None) -> None:
        for value, idx in self.derived.values():
            old = value(prev.obj) if prev is not None else ""
            new = value(cur.obj) if cur is not None else ""
            if old == new:
                continue
            if old:
                keys = idx[old]
                keys.discard(key)
                if not keys:
                    del idx[old]
            if new:
                idx.setdefault(new, set()).add(key)

    def replace_all(self, entries: Iterable[Entry], rev: int) -> None:
        self.items.clear()
        for idx in self.index.values():
            idx.clear()
        for e in entries:
            self.items[e.key] = e
            self._index_add(e)
        for value, idx in self.derived.values():
            self._derived_fill(value, idx)
        self.history.clear()
        self.history_revs.clear()
        self.floor = rev

    def apply(self, type: EventType, key: str, value: bytes, rev: int, written: Entry | None = None) -> CacheEvent:
        """Apply one change; `written` is this server's own entry for it (see `Cacher.written`), else decoded."""
        if written is not None and written.key != key:
            written = None
        if type == EventType.DELETED:
            prev = self.items.pop(key, None)
            cur = written or self.make_entry(key, value, rev)
            if prev is not None:
                self._index_remove(prev)
                if self.derived:
                    self._derived_update(key, prev, None)
            ev = CacheEvent(DELETED, rev, cur, prev)
        else:
            cur = written or self.make_entry(key, value, rev)
            prev = self.items.get(key)
            self.items[key] = cur
            if prev is not None:
                if prev.fields != cur.fields:
                    self._index_remove(prev)
                    self._index_add(cur)
            else:
                self._index_add(cur)
            if self.derived:
                self._derived_update(key, prev, cur)
            ev = CacheEvent(MODIFIED if prev is not None else ADDED, rev, cur, prev)
        self.history.append(ev)
        self.history_revs.append(rev)
        if len(self.history) > 2 * self.capacity:
            n = len(self.history) - self.capacity
            self.floor = self.history_revs[n - 1]
            del self.history[:n]
            del self.history_revs[:n]
        for w in self.watchers.candidates(cur.fields, prev.fields if prev is not None else None):
            deliver(w, ev)
        return ev

    # --- reading -----------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        e: Entry | None = self.items.get(key)
        return e

    def select(
        self,
        namespace: str | None,
        label_selector: LabelSelector,
        field_selector: FieldSelector,
        *,
        after_key: str = "",
    ) -> list[Entry]:
        """Matching live entries sorted by key (namespace, then name), starting after `after_key`."""
        eq = field_selector.equalities()
        keys: Iterable[str] | None = None
        name = eq.get("metadata.name")
        if name is not None and namespace is not None:
            k = f"{namespace}/{name}"
            keys = [k] if k in self.items else []
        else:
            for f in self.index:
                if f in eq:
                    keys = sorted(self.index[f].get(eq[f], ()))
                    break
        if keys is None:
            if namespace is not None:
                keys = self.items.irange(f"{namespace}/", f"{namespace}0", inclusive=(True, False))
            else:
                keys = self.items.irange(after_key, None, inclusive=(False, True)) if after_key else self.items
        out = []
        items = self.items
        for k in keys:
            if after_key and k <= after_key:
                continue
            e: Entry = items[k]
            if namespace is not None and e.namespace != namespace:
                continue
            if label_selector.requirements and not label_selector.matches(e.labels):
                continue
            if field_selector.requirements and not field_selector.matches(e.fields):
                continue
            out.append(e)
        return out

    def snapshot_at(self, rev: int, current_rev: int) -> dict[str, Entry]:
        """The live objects as they were at `rev`, rebuilt from history; raises Expired if too old."""
        if rev >= current_rev:
            return dict(self.items)
        if rev < self.floor:
            raise Expired(f"too old resource version: {rev} ({self.floor + 1})")
        state: dict[str, Entry | None] = {}
        start = bisect.bisect_right(self.history_revs, rev)
        for ev in reversed(self.history[start:]):
            state[ev.cur.key] = ev.prev if ev.type != ADDED else None
        snap = dict(self.items)
        for k, e in state.items():
            if e is None:
                snap.pop(k, None)
            else:
                snap[k] = e
        return snap

    def events_after(self, rev: int) -> list[CacheEvent]:
        if rev < self.floor:
            raise Expired(f"too old resource version: {rev} ({self.floor + 1})")
        return self.history[bisect.bisect_right(self.history_revs, rev) :]


class Cacher:
    """All resource caches, the store watch that feeds them, and waiting for a revision."""

    def __init__(
        self,
        store: Store,
        *,
        history: int = 50_000,
        resources: Iterable[Resource] = ALL_RESOURCES,
        on_events: Callable[[list[CacheEvent]], None] | None = None,
        on_reload: Callable[[], None] | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.store = store
        self.clock = clock
        """Times `wait_for` and the retry of a failed store watch."""
        self.caches: dict[str, ResourceCache] = {r.plural: ResourceCache(r, history=history) for r in resources}
        self.revision = 0
        self.ready = asyncio.Event()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._abandoned = 0
        """Waiters in the heap whose caller gave up (timed out, cancelled): dropped when they are half of it."""
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._on_events = on_events
        self._on_reload = on_reload
        """Called after the cache is rebuilt from a fresh list (its history compacted away): what followed the
        events may have missed changes, so it must look at everything again."""
        self.failed: BaseException | None = None
        self._written: dict[int, Entry] = {}

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._run(), name="kos-cacher")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for w in list(self.all_watchers()):
            w.close()
        self.release_waiters()

    def release_waiters(self) -> None:
        """Answer every request waiting for a revision with 503 (the server is shutting down)."""
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(ServiceUnavailable("the apiserver is shutting down"))

    def all_watchers(self) -> Iterable[Watcher]:
        for c in self.caches.values():
            yield from c.watchers.all()

    async def _load(self) -> None:
        items, rev = await self.store.list("/")
        per: dict[str, list[Entry]] = {p: [] for p in self.caches}
        for kv in items:
            plural, _, rest = kv.key[1:].partition("/")
            cache = self.caches.get(plural)
            if cache is None:
                continue
            per[plural].append(cache.make_entry(rest, kv.value, kv.mod_revision))
        for plural, entries in per.items():
            self.caches[plural].replace_all(entries, rev)
        self.revision = rev
        self._written = {r: e for r, e in self._written.items() if r > rev}
        self.ready.set()
        log.info("watch cache loaded", revision=rev, objects=len(items))

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                async for batch in self.store.watch("/", self.revision):
                    self._apply(batch)
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Compacted:
                log.warning("store history compacted under the watch cache; reloading at the current revision")
                self._relist_watchers("the watch cache was rebuilt")
                await self._load()
                if self._on_reload is not None:
                    self._on_reload()
            except StoreError as e:
                log.warning("store watch failed; resuming", error=e, revision=self.revision)
                await self.clock.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as e:  # a bug: fail loudly but keep serving what we have
                self.failed = e
                log.exception("watch cache apply failed")
                await self.clock.sleep(1.0)

    def _relist_watchers(self, reason: str) -> None:
        for w in list(self.all_watchers()):
            w.close(reason)

    def written(self, entry: Entry) -> None:
        """This server just wrote `entry` (at `entry.rev`): its event need not be decoded again.

        Decoding the stored bytes was ~6% of the apiserver's CPU under the driver's load, and the
        entry also carries the JSON its response was encoded to, which its watch events reuse.
        Only a hint: an event applied before its hint arrives (another server's write, a backend
        that reports the write late) is decoded as before.
        """
        if entry.rev > self.revision:
            w = self._written
            if len(w) > 65_536:  # writes whose events never came (cannot happen, but never grow without bound)
                w.clear()
            w[entry.rev] = entry

    def own_write(self, key: str, cls: type) -> Entry | None:
        """This server's newest write of the `cls` object at cache key `key` ("namespace/name") that the cache has
        not applied yet (its event is still on the way), or None.

        Exactly what the store held at that entry's revision, so a caller that guards its own write on
        (key, that revision) may use it where it would otherwise read the store: a lock created a moment ago by
        the same client, whose response came back before its watch event (kos.apiserver.address_protection).
        """
        best: Entry | None = None
        for e in self._written.values():  # only this server's writes still in flight to the cache: a few
            if e.key == key and type(e.obj) is cls and (best is None or e.rev > best.rev):
                best = e
        return best

    def _apply(self, batch: list[Event]) -> None:
        applied: list[CacheEvent] = []
        written = self._written
        for e in batch:
            if e.revision <= self.revision:
                continue
            plural, _, rest = e.key[1:].partition("/")
            cache = self.caches.get(plural)
            if cache is not None:
                try:
                    hint = written.pop(e.revision, None) if written else None
                    applied.append(cache.apply(e.type, rest, e.value, e.revision, hint))
                except msgspec.DecodeError:
                    log.error("undecodable value skipped", key=e.key, revision=e.revision)
            self.revision = e.revision
        if applied and self._on_events is not None:
            self._on_events(applied)
        self._wake()

    def _wake(self) -> None:
        w = self._waiters
        while w and w[0][0] <= self.revision:
            _, _, fut = heapq.heappop(w)
            if not fut.done():
                fut.set_result(None)

    async def wait_for(self, rev: int, timeout: float = 3.0) -> None:
        """Return once the cache has applied `rev`; Timeout (504) if it does not within `timeout` seconds of the
        cacher's clock (ResourceVersionTooLarge, 504, if the cache has not reached `rev` by then)."""
        if rev <= self.revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rev, next(self._seq), fut))
        timer = self.clock.call_later(timeout, _expire, fut)  # cheaper than asyncio.wait_for, which every write pays
        try:
            await fut
        except TimeoutError:
            self._abandon()
            if rev > self.revision:
                raise errors.too_large_resource_version(rev, self.revision) from None
            raise Timeout("timed out waiting for the watch cache") from None
        except asyncio.CancelledError:
            self._abandon()
            raise
        finally:
            timer.cancel()

    def _abandon(self) -> None:
        """A waiter gave up before its revision came: forget it (a far-future revision may never come)."""
        self._abandoned += 1
        if self._abandoned > 16 and self._abandoned * 2 > len(self._waiters):
            self._waiters = [w for w in self._waiters if not w[2].done()]
            heapq.heapify(self._waiters)
            self._abandoned = 0

    @property
    def waiting(self) -> int:
        """Callers waiting for a revision (abandoned waiters not counted)."""
        return sum(1 for w in self._waiters if not w[2].done())

    @property
    def held_waiters(self) -> int:
        """Entries the waiter heap holds, abandoned ones included (bounded by twice the live ones, plus 16)."""
        return len(self._waiters)

    async def wait_for_client_revision(self, rev: int) -> None:
        """Wait for a revision a client named (resourceVersion); 504 ResourceVersionTooLarge if it cannot come.

        A revision above the *store's* current one was never handed out by this store: the client
        holds it from a store that has since been replaced (a restart on memory://, an etcd restored
        from a backup). It is refused at once rather than after kube-apiserver's 3 s wait: while such
        a watch waited, the new store could pass that revision and the watch would then be accepted,
        silently skipping everything the new store held before it (kubernetes #91073). A revision the
        store has but this cache has not applied yet is waited for, as kube-apiserver's cacher does.
        """
        if rev <= self.revision:
            return
        try:
            current = await self.store.current_revision()
        except StoreError as e:
            raise ServiceUnavailable(f"storage is unavailable: {e}") from e
        if rev > current:
            raise errors.too_large_resource_version(rev, current)
        await self.wait_for(rev)

    async def sync(self) -> int:
        """Wait until the cache holds every write the store has acknowledged; the revision reached."""
        try:
            rev = await self.store.current_revision()
        except StoreError as e:
            raise ServiceUnavailable(f"storage is unavailable: {e}") from e
        await self.wait_for(rev, timeout=10.0)
        return self.revision


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
