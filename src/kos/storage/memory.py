"""`memory://`: the whole store in one process's memory, for tests and benchmarks.

Nothing survives the process. Every operation completes without yielding to the
event loop, so compare-and-swap is trivially atomic.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence

from kos.storage.eventlog import EventLog
from kos.storage.interface import (
    Deleted,
    Event,
    EventType,
    Guard,
    GuardFailed,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionMismatch,
    Unavailable,
    guard_holds,
    initial_revision,
)


class MemoryStore:
    def __init__(self, *, history: int = 100_000, revision: int | None = None) -> None:
        """`revision`: where the store starts (default `initial_revision()`, the clock); a low one makes the
        store look like one restored from an old backup, behind its clients (for tests)."""
        self._data: dict[str, KeyValue] = {}
        self._rev = initial_revision() if revision is None else revision
        self._log = EventLog(revision=self._rev, capacity=history)
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("store is closed")

    async def get(self, key: str) -> KeyValue | None:
        self._check_open()
        return self._data.get(key)

    async def list(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        self._check_open()
        items = [kv for k, kv in self._data.items() if k.startswith(prefix)]
        items.sort(key=lambda kv: kv.key)
        return items, self._rev

    async def create(self, key: str, value: bytes) -> int:
        self._check_open()
        if key in self._data:
            raise KeyExists(key)
        self._rev += 1
        self._data[key] = KeyValue(key, value, self._rev, self._rev)
        self._log.publish([Event(EventType.ADDED, key, value, None, self._rev)])
        return self._rev

    def _check_guards(self, guards: Sequence[Guard]) -> None:
        for g in guards:
            cur = self._data.get(g.key)
            if not guard_holds(g, cur):
                raise GuardFailed(g, cur)

    async def update(self, key: str, value: bytes, expected_revision: int, guards: Sequence[Guard] = ()) -> int:
        self._check_open()
        cur = self._data.get(key)
        if cur is None:
            raise KeyNotFound(key)
        if cur.mod_revision != expected_revision:
            raise RevisionMismatch(key, expected_revision, cur)
        self._check_guards(guards)
        self._rev += 1
        self._data[key] = KeyValue(key, value, cur.create_revision, self._rev)
        self._log.publish([Event(EventType.MODIFIED, key, value, cur.value, self._rev)])
        return self._rev

    async def delete(self, key: str, expected_revision: int | None = None, guards: Sequence[Guard] = ()) -> Deleted:
        self._check_open()
        cur = self._data.get(key)
        if cur is None:
            raise KeyNotFound(key)
        if expected_revision is not None and cur.mod_revision != expected_revision:
            raise RevisionMismatch(key, expected_revision, cur)
        self._check_guards(guards)
        self._rev += 1
        del self._data[key]
        self._log.publish([Event(EventType.DELETED, key, cur.value, cur.value, self._rev)])
        return Deleted(self._rev, cur)

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[builtins.list[Event]]:
        return self._log.watch(prefix, after_revision)

    async def current_revision(self) -> int:
        self._check_open()
        return self._rev

    async def compact(self, revision: int) -> None:
        self._check_open()
        self._log.compact(revision)

    async def close(self) -> None:
        self._closed = True
        self._log.close()
