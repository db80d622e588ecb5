"""The Store contract every backend meets (ARCHITECTURE §5), and the errors it raises.

A Store maps keys `/<plural>/<namespace>/<name>` to encoded objects, with one
global, monotonically increasing revision, as etcd does. An object's
resourceVersion is its key's mod revision; a list's is the store revision. Every
write is a compare-and-swap so that two writers can never both win. A watch
replays every change after a revision, in order, or fails with `Compacted` when
that history is gone (the apiserver turns that into HTTP 410).

Updates and deletes may carry `Guard`s: preconditions on *other* keys, checked in
the same atomic step as the write (etcd's multi-key transaction compare). They are
how the apiserver keeps a rule that spans two objects — an attachment may show an
address only while its IPLock exists, and that lock may go only while no
attachment shows the address — true at every revision, even with several
apiservers whose caches lag the store (ARCHITECTURE §8, invariant 1).
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import time
from collections.abc import AsyncIterator, Sequence
from typing import Protocol


def initial_revision() -> int:
    """The revision a fresh store starts at: the wall clock, in microseconds since the epoch.

    Clients that knew an earlier store at the same address (an apiserver restarted on a fresh
    `memory://` store or a new SQLite file) hold its revisions. Were the new store to start at 0, it
    would reach those numbers again with other meanings, and a watch resumed from one would be
    accepted and silently miss everything before it (kubernetes #91073; etcd's answer for a restored
    backup is `etcdutl snapshot restore --bump-revision --mark-compacted`). A store starting above any
    revision an earlier one could have reached — that would take more than one write per microsecond
    of its life — makes every old revision "compacted": the client gets 410 Gone and lists again.
    """
    return time.time_ns() // 1000


class EventType(enum.IntEnum):
    ADDED = 0
    MODIFIED = 1
    DELETED = 2


@dataclasses.dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    key: str
    value: bytes
    """The new value; for DELETED, the value the key held when it was deleted."""
    prev_value: bytes | None
    revision: int
    """The revision of this change (for DELETED, the deletion's revision)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    """A precondition on another key, checked atomically with a write.

    The write applies only if `key`'s mod revision is `mod_revision`; 0 means the key must be absent
    (etcd gives a missing key mod revision 0, and no present key has it).
    """

    key: str
    mod_revision: int


class StoreError(Exception):
    """Base of storage errors."""


class KeyExists(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key} already exists")
        self.key = key


class KeyNotFound(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key} not found")
        self.key = key


class RevisionMismatch(StoreError):
    """A compare-and-swap lost: the key's mod revision is not the one expected."""

    def __init__(self, key: str, expected: int, current: KeyValue) -> None:
        super().__init__(f"key {key} is at revision {current.mod_revision}, not {expected}")
        self.key = key
        self.expected = expected
        self.current = current


class GuardFailed(StoreError):
    """A write's guard did not hold: `guard.key` is at another revision (or absent, or present)."""

    def __init__(self, guard: Guard, current: KeyValue | None) -> None:
        now = f"at revision {current.mod_revision}" if current is not None else "absent"
        want = f"at revision {guard.mod_revision}" if guard.mod_revision else "absent"
        super().__init__(f"guard failed: key {guard.key} is {now}, not {want}")
        self.guard = guard
        self.current = current


def guard_holds(guard: Guard, current: KeyValue | None) -> bool:
    """Whether `guard` holds when its key is `current` (None: absent)."""
    return (current.mod_revision if current is not None else 0) == guard.mod_revision


class Compacted(StoreError):
    """The history needed to serve a watch from `requested` has been compacted away."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (oldest available is {compacted + 1})")
        self.requested = requested
        self.compacted = compacted


class WatchLagging(StoreError):
    """A watcher fell too far behind and was cut off; resume from the last revision it saw."""


class Unavailable(StoreError):
    """The backend cannot be reached or has been closed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Deleted:
    revision: int
    prev: KeyValue


class Store(Protocol):
    async def get(self, key: str) -> KeyValue | None: ...

    async def list(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        """Every key under `prefix`, sorted by key, and the store revision they are consistent with."""
        ...

    async def create(self, key: str, value: bytes) -> int:
        """Create `key`; its revision. Raises KeyExists."""
        ...

    async def update(self, key: str, value: bytes, expected_revision: int, guards: Sequence[Guard] = ()) -> int:
        """Replace `key` if its mod revision is `expected_revision` and every guard holds; the new revision.

        Raises KeyNotFound or RevisionMismatch (checked first), then GuardFailed.
        """
        ...

    async def delete(self, key: str, expected_revision: int | None = None, guards: Sequence[Guard] = ()) -> Deleted:
        """Delete `key` (if at `expected_revision`, when given, and if every guard holds).

        Raises KeyNotFound or RevisionMismatch (checked first), then GuardFailed.
        """
        ...

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[builtins.list[Event]]:
        """Batches of the changes under `prefix` with revision > `after_revision`, in revision order.

        Raises Compacted (when iterated) if that history is gone, WatchLagging if the
        consumer falls too far behind, Unavailable if the store closes.
        """
        ...

    async def current_revision(self) -> int: ...

    async def compact(self, revision: int) -> None:
        """Forget history up to and including `revision`."""
        ...

    async def close(self) -> None: ...
