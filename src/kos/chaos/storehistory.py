"""The store's truth for a chaos run: every change of every kos key, read from etcd itself.

A checker that compared what clients saw with what an apiserver says would trust the thing under test.
This module reads the store directly — the same `kos.storage` backend the apiservers use, opened from the
same `--storage` URL, so etcd's own revisions and previous values — and turns it into a list of
`StoreEvent`s, each one etcd revision, decoded into kos objects as the apiserver's watch cache decodes them
(kos.apiserver.cache: key `/<plural>/<namespace>/<name>` under the URL's prefix, the object's
resourceVersion is the key's mod revision, a deletion carries the last value it deleted).

How it is read, and why that is exact: one list of every key gives the state at revision R (etcd's
revision when the list was served); one watch from the beginning of etcd's history (revision 0) up to R
gives every change with its previous value. The state before the first change is then the list rolled back
through the changes in reverse — from revision 0 it must come out empty, which checks the read itself.

The apiserver never compacts etcd, so the whole history is normally there. When etcd did compact it (an
operator, `--auto-compaction-retention`), the history starts at the compaction revision C instead: the
state at C is still the list rolled back, but a version written before C has no known revision (0).
`StoreHistory.first` says from where the history is complete; a run that started before it cannot be
checked, and kos.chaos.checker says so ("cannot check: compacted at C").
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
from typing import Any

import msgspec

from kos.api import codec
from kos.api.resources import BY_PLURAL
from kos.storage.interface import Compacted, Event, EventType, Store
from kos.storage.url import open_store

__all__ = ["Key", "StoreEvent", "StoreHistory", "build_history", "decode_key", "read_store_history", "store_revision"]

Key = tuple[str, str, str]
"""(resource plural, namespace, name) of one object."""

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
_TYPES = {EventType.ADDED: ADDED, EventType.MODIFIED: MODIFIED, EventType.DELETED: DELETED}


@dataclasses.dataclass(frozen=True, slots=True)
class StoreEvent:
    """One change at etcd revision `revision`.

    `type` is ADDED (the key was created), MODIFIED (it was written again) or DELETED. `obj` is the object
    after the change, its resourceVersion `revision`; for DELETED the last state it had, stamped with the
    deletion's revision (as the watch cache sends it). `prev` is the object before the change (None for
    ADDED), its resourceVersion its own revision — 0 when that revision is older than the history.
    """

    revision: int
    type: str
    key: Key
    obj: Any
    prev: Any | None


@dataclasses.dataclass(slots=True)
class StoreHistory:
    """The store's objects at revision `first` (`initial`) and every change after it up to `end`, in order.

    `first` is 0 when the history is whole (from etcd's first revision), else the revision etcd compacted
    at: history before it is gone. `undecodable` lists the changes whose value did not decode as their
    kind (the watch cache skips those too), as "revision R key K: why".
    """

    first: int
    end: int
    initial: dict[Key, Any]
    events: list[StoreEvent]
    undecodable: list[str] = dataclasses.field(default_factory=list)
    _revisions: list[int] = dataclasses.field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._revisions = [e.revision for e in self.events]

    def between(self, after: int, upto: int) -> list[StoreEvent]:
        """The changes with `after` < revision <= `upto`, in order."""
        lo = bisect.bisect_right(self._revisions, after)
        hi = bisect.bisect_right(self._revisions, upto)
        return self.events[lo:hi]

    def state_at(self, revision: int) -> dict[Key, Any]:
        """The objects present at `revision` (>= `first`), by key."""
        state = dict(self.initial)
        for e in self.between(self.first, revision):
            if e.type == DELETED:
                state.pop(e.key, None)
            else:
                state[e.key] = e.obj
        return state


def decode_key(key: str) -> Key | None:
    """A store key `/<plural>/<namespace>/<name>` as (plural, namespace, name); None for a key of no
    kind kos serves (the watch cache ignores those too)."""
    plural, _, rest = key[1:].partition("/")
    if plural not in BY_PLURAL:
        return None
    namespace, _, name = rest.partition("/")
    return plural, namespace, name


class _Decoder:
    """Stored values to kos objects stamped with a revision, one msgspec decoder per kind."""

    def __init__(self) -> None:
        self._decoders = {p: codec.decoder(r.object_type) for p, r in BY_PLURAL.items()}

    def __call__(self, key: Key, value: bytes, revision: int) -> Any:
        """Raises msgspec.DecodeError/ValidationError for a value that is not an object of the key's kind."""
        return codec.with_resource_version(self._decoders[key[0]].decode(value), revision)


async def _changes(store: Store, after: int, upto: int, idle_timeout: float) -> list[Event]:
    """Every change with `after` < revision <= `upto`. Raises Compacted when that history is gone.

    The watch is left once it delivers revision `upto`, or when it delivers nothing for `idle_timeout`
    seconds after reaching every revision it will (etcd's revisions after the last kos change belong to
    keys outside the prefix): etcd replays history at about 7k events/s in batches of ~1000 per 100 ms.
    """
    out: list[Event] = []
    if upto <= after:
        return out
    it = store.watch("/", after).__aiter__()
    try:
        while True:
            try:
                batch = await asyncio.wait_for(it.__anext__(), idle_timeout)
            except TimeoutError:
                return out
            for e in batch:
                if e.revision > upto:
                    return out
                out.append(e)
            if out and out[-1].revision >= upto:
                return out
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


def build_history(items: list[tuple[str, bytes, int]], end: int, changes: list[Event], first: int) -> StoreHistory:
    """A `StoreHistory` from the keys at revision `end` (store key, value, mod revision) and every change
    after `first` up to `end`; the initial state is `items` rolled back through `changes`. Pure (no I/O)."""
    decode = _Decoder()
    undecodable: list[str] = []

    def obj(key: Key, value: bytes, revision: int, where: str) -> Any:
        try:
            return decode(key, value, revision)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            undecodable.append(f"revision {revision} key {'/'.join(key)} ({where}): {e}")
            return None

    # forward: each change's previous revision on its key (0 when it is before the history)
    last: dict[Key, int] = {}
    events: list[StoreEvent] = []
    for c in changes:
        key = decode_key(c.key)
        if key is None:
            continue
        typ = _TYPES[c.type]
        prev_rev = last.get(key, 0)
        prev = obj(key, c.prev_value, prev_rev, "previous value") if c.prev_value is not None else None
        cur = obj(key, c.value, c.revision, "value")
        if cur is None or (c.prev_value is not None and prev is None):
            continue
        events.append(StoreEvent(c.revision, typ, key, cur, prev))
        if typ == DELETED:
            last.pop(key, None)
        else:
            last[key] = c.revision
    # backward: the state at `end`, undone change by change
    state: dict[Key, Any] = {}
    for k, value, mod in items:
        key = decode_key(k)
        if key is not None and (o := obj(key, value, mod, "listed")) is not None:
            state[key] = o
    for e in reversed(events):
        if e.prev is None:
            state.pop(e.key, None)
        else:
            state[e.key] = e.prev
    return StoreHistory(first=first, end=end, initial=state, events=events, undecodable=undecodable)


async def read_store_history(storage: str, *, idle_timeout: float = 10.0) -> StoreHistory:
    """The whole history of the kos store at `storage` (a `kos apiserver --storage` URL:
    `etcd://h:p,h:p/prefix?cacert=&cert=&key=`, or any other kind `kos.storage.url` opens) up to its
    current revision, read from the store itself. Raises StoreURLError for a bad URL and
    kos.storage.interface.Unavailable when the store cannot be reached; a compacted history is not an
    error (see `StoreHistory.first`). `idle_timeout` (seconds) see `_changes`.
    """
    store = await open_store(storage)
    try:
        listed, end = await store.list("/")
        items = [(kv.key, kv.value, kv.mod_revision) for kv in listed]
        first = 0
        for _ in range(5):
            try:
                changes = await _changes(store, first, end, idle_timeout)
                break
            except Compacted as e:
                first = e.compacted
        else:
            raise Compacted(first, first)
        return build_history(items, end, changes, first)
    finally:
        await store.close()


async def store_revision(storage: str) -> int:
    """The current revision of the store at `storage` (as `read_store_history` takes it): a run's start, to
    read before its first call and stream. Raises as `read_store_history`."""
    store = await open_store(storage)
    try:
        return await store.current_revision()
    finally:
        await store.close()
