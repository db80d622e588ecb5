"""An in-memory fake of `kos.client.api.WatchAPI`, for unit tests of the decisions controllers and agents make.

It keeps the semantics those decisions rest on, as the apiserver has them:
every write takes the next resourceVersion (one counter for all kinds); create
sets a uid and a creation timestamp (one-second precision), fills in
`generateName`, and answers 409 AlreadyExists for a taken name; update and
update_status answer 409 Conflict for a stale resourceVersion and write only
their own half (spec and metadata, or status), and update needs a
resourceVersion (422 without one); delete honours uid and
resourceVersion preconditions (a Conflict with the `PreconditionFailed` cause)
and, while finalizers remain, only sets the deletion timestamp; get, update and
delete of a missing object answer 404 NotFound. list and watch filter by
namespace, label and field selector (the resource table's selectable fields),
and a watch sees an object that stops matching as DELETED and one that starts
matching as ADDED, as the apiserver's watch cache sends them.

What the apiserver does beyond that (validation, address protection, garbage
collection, write times) it does not do. Errors are injected with `fail`; every
call is recorded in `calls`; `put` stores an object as given (any creation
timestamp), for states no client could produce; `settled` waits until every
watcher has handled every event sent so far.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import datetime
import itertools
import random
import string
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import msgspec

from kos.api import codec, errors, field
from kos.api.resources import BY_TYPE, Resource
from kos.api.selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector
from kos.api.types import Object
from kos.apiserver.patch import merge_patch
from kos.client.rest import ADDED, BOOKMARK, DELETED, MODIFIED, WatchEvent

T = TypeVar("T", bound=Object)

Key = tuple[type[Any], str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One call the fake answered (or failed): the verb ("get", "update_status", ...), kind, namespace, name,
    and for a list or watch the `resource_version` asked for ("": a consistent read, or a watch from now)."""

    verb: str
    kind: str
    namespace: str | None
    name: str = ""
    resource_version: str = ""


@dataclasses.dataclass(slots=True)
class _Fault:
    verb: str
    kind: str | None
    name: str | None
    error: BaseException | Callable[[], BaseException]
    times: int


@dataclasses.dataclass(slots=True)
class _Watcher:
    cls: type[Any]
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[WatchEvent]


class FakeAPI:
    """In-memory objects with the apiserver's write semantics (see the module docstring)."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self.objects: dict[Key, Any] = {}
        self.revision = 0
        self.calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._watchers: list[_Watcher] = []
        self._rng = rng or random.Random(0)
        self._uids = itertools.count(1)
        self.now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
        """The clock of creation and deletion timestamps (replace it to control them)."""

    # --- test controls -----------------------------------------------------------------------

    def fail(
        self,
        verb: str,
        error: BaseException | Callable[[], BaseException],
        *,
        kind: str | None = None,
        name: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `verb` (on `kind`/`name` if given) raise `error` before doing anything."""
        self._faults.append(_Fault(verb, kind, name, error, times))

    def put(self, obj: T) -> T:
        """Store `obj` as it is (metadata included) at the next resourceVersion, notifying watchers."""
        stored = codec.replace_meta(obj, resource_version=self._next_rv())
        self._store(stored)
        return stored

    def count(self, verb: str, kind: str | None = None) -> int:
        """How many `verb` calls (on `kind`, if given) the fake has received."""
        return sum(1 for c in self.calls if c.verb == verb and (kind is None or c.kind == kind))

    async def settled(self) -> None:
        """Return once every watcher has handled every event sent so far (it asked for the next one): the
        barrier after which "no event did X" can be checked."""
        for w in list(self._watchers):
            await w.queue.join()

    def stored(self, cls: type[T], namespace: str, name: str) -> T | None:
        """The object as the fake holds it now, without recording a call."""
        obj: T | None = self.objects.get((cls, namespace, name))
        return obj

    # --- the API -----------------------------------------------------------------------------

    async def get(self, cls: type[T], namespace: str, name: str, *, resource_version: str = "") -> T:
        self._enter("get", cls, namespace, name)
        return self._existing(cls, namespace, name)

    async def list(
        self,
        cls: type[T],
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> tuple[builtins.list[T], str]:
        self._enter("list", cls, namespace, resource_version=resource_version)
        labels, fields = parse_label_selector(label_selector), parse_field_selector(field_selector)
        res = BY_TYPE[cls]
        items = [o for o in self._of(cls) if _matches(res, o, namespace, labels, fields)]
        return items, str(self.revision)

    async def create(self, obj: T) -> T:
        cls, m = type(obj), obj.metadata
        name = m.name or (m.generate_name + "".join(self._rng.choices(string.ascii_lowercase + string.digits, k=5)))
        self._enter("create", cls, m.namespace, name)
        if not name:
            raise errors.Invalid("metadata.name or metadata.generateName is required")
        if (cls, m.namespace, name) in self.objects:
            raise errors.already_exists(BY_TYPE[cls].plural, name)
        created = codec.replace_meta(
            obj, name=name, uid=str(uuid.UUID(int=next(self._uids))), resource_version=self._next_rv(),
            creation_timestamp=self.now().replace(microsecond=0), deletion_timestamp=None,
        )  # fmt: skip
        self._store(created)
        return created

    async def update(self, obj: T) -> T:
        if not obj.metadata.resource_version:  # as the registry answers: a main-resource PUT names its version
            self._enter("update", type(obj), obj.metadata.namespace, obj.metadata.name)
            kind = BY_TYPE[type(obj)].kind
            why = field.invalid("metadata.resourceVersion", "", "must be specified for an update")
            raise errors.invalid(kind, obj.metadata.name, [why])
        old = self._for_write("update", obj)
        new = _with_status(obj, old) if BY_TYPE[type(obj)].has_status else obj
        new = codec.replace_meta(
            new, uid=old.metadata.uid, creation_timestamp=old.metadata.creation_timestamp,
            deletion_timestamp=old.metadata.deletion_timestamp, resource_version=self._next_rv(),
        )  # fmt: skip
        self._store(new, old)
        return new

    async def update_status(self, obj: T) -> T:
        old = self._for_write("update_status", obj)
        new = codec.replace_meta(_with_status(old, obj), resource_version=self._next_rv())
        self._store(new, old)
        return new

    async def patch(
        self, cls: type[T], namespace: str, name: str, patch: Any, *, kind: str = "merge", subresource: str = ""
    ) -> T:
        self._enter("patch", cls, namespace, name)
        if kind != "merge":
            raise errors.UnsupportedMediaType("the fake API applies merge patches only")
        old = self._existing(cls, namespace, name)
        want_rv = (patch.get("metadata") or {}).get("resourceVersion")
        if want_rv is not None and want_rv != old.metadata.resource_version:
            raise errors.conflict(BY_TYPE[cls].plural, name, errors.STALE_OBJECT)
        doc = merge_patch(codec.to_builtins(old), patch)
        patched = codec.convert(doc, cls)
        if subresource == "status":
            new = _with_status(old, patched)
        elif BY_TYPE[cls].has_status:
            new = _with_status(patched, old)
        else:
            new = patched
        new = codec.replace_meta(new, uid=old.metadata.uid, resource_version=self._next_rv())
        self._store(new, old)
        return new

    async def delete(
        self,
        cls: type[T],
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: str | None = None,
    ) -> T:
        self._enter("delete", cls, namespace, name)
        old = self._existing(cls, namespace, name)
        plural = BY_TYPE[cls].plural
        if uid is not None and uid != old.metadata.uid:
            raise errors.precondition_failed(plural, name, "UID", uid, old.metadata.uid)
        rv = old.metadata.resource_version
        if resource_version is not None and resource_version != rv:
            raise errors.precondition_failed(plural, name, "ResourceVersion", resource_version, rv)
        if old.metadata.finalizers:
            if old.metadata.deletion_timestamp is not None:
                return old
            new = codec.replace_meta(old, deletion_timestamp=self.now().replace(microsecond=0),
                                     resource_version=self._next_rv())  # fmt: skip
            self._store(new, old)
            return new
        del self.objects[(cls, namespace, name)]
        gone = codec.replace_meta(old, resource_version=self._next_rv())
        self._notify(old, None, gone)
        return old

    async def watch(
        self,
        cls: Any,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
        send_initial_events: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        """A streaming list (`send_initial_events`) or the changes from now on; resuming at an old
        `resource_version` is not kept (the fake has no history): such a watch starts from now."""
        self._enter("watch", cls, namespace, resource_version=resource_version)
        w = _Watcher(cls, namespace, parse_label_selector(label_selector), parse_field_selector(field_selector),
                     asyncio.Queue())  # fmt: skip
        self._watchers.append(w)
        try:
            if send_initial_events:
                res = BY_TYPE[cls]
                for o in self._of(cls):
                    if _matches(res, o, namespace, w.labels, w.fields):
                        yield WatchEvent(ADDED, o, o.metadata.resource_version)
                yield WatchEvent(BOOKMARK, None, str(self.revision), initial_events_end=True)
            while True:
                ev = await w.queue.get()
                try:
                    yield ev
                finally:
                    w.queue.task_done()  # the consumer came back for the next event: this one is handled
        finally:
            self._watchers.remove(w)

    # --- internals ---------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _of(self, cls: type[T]) -> builtins.list[T]:
        return [o for (c, _, _), o in self.objects.items() if c is cls]

    def _enter(
        self, verb: str, cls: type[Any], namespace: str | None, name: str = "", resource_version: str = ""
    ) -> None:
        kind = BY_TYPE[cls].kind
        self.calls.append(Call(verb, kind, namespace, name, resource_version))
        for f in self._faults:
            if f.verb == verb and f.kind in (None, kind) and f.name in (None, name):
                f.times -= 1
                if f.times <= 0:
                    self._faults.remove(f)
                raise f.error if isinstance(f.error, BaseException) else f.error()

    def _existing(self, cls: type[T], namespace: str, name: str) -> T:
        obj: T | None = self.objects.get((cls, namespace, name))
        if obj is None:
            raise errors.not_found(BY_TYPE[cls].plural, BY_TYPE[cls].kind, name)
        return obj

    def _for_write(self, verb: str, obj: T) -> T:
        m = obj.metadata
        self._enter(verb, type(obj), m.namespace, m.name)
        old = self._existing(type(obj), m.namespace, m.name)
        plural = BY_TYPE[type(obj)].plural
        if m.uid and m.uid != old.metadata.uid:
            raise errors.precondition_failed(plural, m.name, "UID", m.uid, old.metadata.uid)
        if m.resource_version and m.resource_version != old.metadata.resource_version:
            raise errors.conflict(plural, m.name, errors.STALE_OBJECT)
        return old

    def _store(self, new: Any, old: Any = None) -> None:
        m = new.metadata
        if old is None:
            old = self.objects.get((type(new), m.namespace, m.name))
        self.objects[(type(new), m.namespace, m.name)] = new
        self._notify(old, new, new)

    def _notify(self, old: Any, new: Any, event_obj: Any) -> None:
        cls = type(event_obj)
        res = BY_TYPE[cls]
        rv = event_obj.metadata.resource_version
        for w in self._watchers:
            if w.cls is not cls:
                continue
            was = old is not None and _matches(res, old, w.namespace, w.labels, w.fields)
            now = new is not None and _matches(res, new, w.namespace, w.labels, w.fields)
            if now:
                w.queue.put_nowait(WatchEvent(MODIFIED if was else ADDED, new, rv))
            elif was:
                # the last state the watcher saw goes, at the revision that removed it (as the watch cache sends it)
                w.queue.put_nowait(WatchEvent(DELETED, event_obj if new is None else new, rv))


def _matches(res: Resource, obj: Any, namespace: str | None, labels: LabelSelector, fields: FieldSelector) -> bool:
    if namespace and obj.metadata.namespace != namespace:
        return False
    if not labels.empty and not labels.matches(obj.metadata.labels):
        return False
    return fields.empty or fields.matches(res.field_values(obj))


def _with_status(obj: T, source: Any) -> T:
    """`obj` with the status of `source`."""
    out: T = msgspec.structs.replace(obj, status=source.status)
    return out
