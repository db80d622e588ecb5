"""The generic registry: Kubernetes object semantics for any kind, over a Store and the watch cache.

One `Registry` per kind binds its strategy to the store (sample-apiserver's
`NewREST`). Reads come from the watch cache (`paging.py` for lists, `watchstart.py`
for watches); writes are compare-and-swap on the store with the revision of the
cached object they were computed from, retried on a lost race when the client did
not pin a resourceVersion (Kubernetes' GuaranteedUpdate). Objects are stored
without resourceVersion; the store's mod revision is their resourceVersion. A
kind's admission (`subnet_admission.py`) and its rules that span other objects
(`WriteRules`, see `address_protection.py`) plug in here.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgspec

from kos.api import codec, errors, field
from kos.api.errors import BadRequest, Conflict, Invalid, NotFound
from kos.api.field import FieldError
from kos.api.resources import Resource
from kos.apiserver import paging, watchstart
from kos.apiserver.auth.gate import Admit
from kos.apiserver.cache import Cacher, Entry, ResourceCache
from kos.apiserver.deletion import (
    FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
    DeleteRequest,
    check_preconditions,
    finalizers_for,
    marked_deleting,
)
from kos.apiserver.paging import ListOptions, ListResult
from kos.apiserver.reads import parse_rv, wait_for_read
from kos.apiserver.strategy import Strategy, prepare_update
from kos.apiserver.subnet_admission import SubnetAdmission
from kos.apiserver.watchers import Watcher
from kos.apiserver.watchstart import WatchOptions
from kos.storage.interface import Guard, GuardFailed, KeyExists, KeyNotFound, RevisionMismatch, Store, StoreError
from kos.util.clock import Clock

__all__ = [  # the option and result types are the registry's interface; they live where they are used
    "FOREGROUND_FINALIZER", "ORPHAN_FINALIZER", "DeleteRequest", "ListOptions", "ListResult", "Registry",
    "SubnetAdmission", "WatchOptions", "WriteRules", "parse_rv",
]  # fmt: skip


MAX_RETRIES = 32
WRITE_VISIBLE_TIMEOUT = 10.0
"""Seconds a write that lost a race waits for the cache to show the winner before trying again."""
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class WriteRules(Protocol):
    """A kind's rules that span other objects, enforced atomically with store guards (see address_protection)."""

    async def update_guards(self, new: Any, old: Entry, subresource: str | None) -> Sequence[Guard]:
        """Guards for writing `new` over `old` (also when the write completes a deletion); raises a StatusError
        when the write must not happen."""
        ...

    def delete_guards(self, old: Entry) -> tuple[Sequence[Guard], str]:
        """Guards for deleting `old` now, or ((), finalizer) when it must stay, held by that finalizer."""
        ...


class Registry:
    """One kind's object semantics: reads from the watch cache, writes through the store (see the module)."""

    def __init__(
        self,
        resource: Resource,
        strategy: Strategy[Any],
        store: Store,
        cacher: Cacher,
        clock: Clock,
        *,
        admission: SubnetAdmission | None = None,
        rules: WriteRules | None = None,
        watcher_max_bytes: int = 64 << 20,
    ) -> None:
        self.resource = resource
        self.strategy = strategy
        self.store = store
        self.cacher = cacher
        self.cache: ResourceCache = cacher.caches[resource.plural]
        self.clock = clock
        self.admission = admission
        self.rules = rules
        self.watcher_max_bytes = watcher_max_bytes
        self._prefix = f"/{resource.plural}/"

    def key(self, namespace: str, name: str) -> str:
        return f"{self._prefix}{namespace}/{name}"

    def _not_found(self, name: str) -> NotFound:
        return errors.not_found(self.resource.plural, self.resource.kind, name)

    def _conflict(self, name: str, why: str = errors.STALE_OBJECT) -> Conflict:
        return errors.conflict(self.resource.plural, name, why)

    def _invalid(self, name: str, errs: list[FieldError]) -> Invalid:
        return errors.invalid(self.resource.kind, name, errs)

    # --- reads -------------------------------------------------------------------------------

    async def get(self, namespace: str, name: str, *, resource_version: str = "") -> Entry:
        await wait_for_read(self.cacher, resource_version)
        e = self.cache.get(f"{namespace}/{name}")
        if e is None:
            raise self._not_found(name)
        return e

    async def list_objects(self, namespace: str | None, opts: ListOptions) -> ListResult:
        """The selected objects of `namespace` (None: every namespace); `opts` as `listoptions` validated them."""
        return await paging.list_objects(self.cacher, self.cache, namespace, opts)

    async def watch(self, namespace: str | None, opts: WatchOptions, *, render: Any = None) -> Watcher:
        """A watcher of `namespace` (None: every namespace) with Kubernetes' start semantics (`watchstart`)."""
        return await watchstart.open_watch(
            self.cacher, self.cache, namespace, opts, render=render, max_bytes=self.watcher_max_bytes, clock=self.clock
        )

    def bookmark(self, rev: int, *, initial_events_end: bool = False) -> bytes:
        return watchstart.bookmark(self.resource, rev, initial_events_end=initial_events_end)

    def stop_watch(self, w: Watcher) -> None:
        watchstart.stop_watch(self.cache, w)

    # --- create ------------------------------------------------------------------------------

    async def create(self, namespace: str, obj: Any, *, dry_run: bool = False) -> Entry:
        meta = obj.metadata
        _check_namespace(namespace, meta.namespace)
        generate = not meta.name and bool(meta.generate_name)
        for _ in range(8 if generate else 1):
            name = meta.name or (meta.generate_name + "".join(random.choices(_NAME_CHARS, k=5)) if generate else "")
            candidate = codec.replace_meta(obj, namespace=namespace, name=name)
            prepared = self.strategy.prepare_for_create(candidate, self.clock.now())
            errs = self.strategy.validate(prepared)
            if errs:
                raise self._invalid(name or meta.generate_name, errs)
            try:
                if self.admission is not None:
                    return await self.admission.create(prepared, lambda o: self._create_one(o, dry_run))
                if dry_run:  # the common path inline (not through _create_one): NA creates are a hot path
                    return self.cache.entry_for(prepared, 0)
                rev = await _store(self.store.create(self.key(namespace, name), codec.encode(prepared)))
                return self._written(self.cache.entry_for(prepared, rev))
            except KeyExists:
                if generate:
                    continue
                raise errors.already_exists(self.resource.plural, name) from None
        raise errors.already_exists(self.resource.plural, meta.generate_name + "*")

    async def _create_one(self, obj: Any, dry_run: bool) -> Entry:
        if dry_run:
            return self.cache.entry_for(obj, 0)
        key = self.key(obj.metadata.namespace, obj.metadata.name)
        rev = await _store(self.store.create(key, codec.encode(obj)))
        return self._written(self.cache.entry_for(obj, rev))

    def _written(self, entry: Entry) -> Entry:
        """What this registry just stored, as the cache will hold it: handed on so the cache need not decode it."""
        self.cacher.written(entry)
        return entry

    # --- update and patch --------------------------------------------------------------------

    async def update(
        self,
        namespace: str,
        name: str,
        obj: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        admit: Admit | None = None,
    ) -> Entry:
        rv = obj.metadata.resource_version
        if not rv and subresource is None:
            raise self._invalid(
                name,
                [field.invalid("metadata.resourceVersion", "", "must be specified for an update")],
            )
        expected = parse_rv(rv, "metadata.resourceVersion") if rv else None
        _check_identity(namespace, name, obj)
        return await self.guaranteed_update(
            namespace, name, lambda _old: obj, expected=expected, subresource=subresource, dry_run=dry_run,
            admit=admit,
        )  # fmt: skip

    async def patch(
        self,
        namespace: str,
        name: str,
        apply_patch: Callable[[dict[str, Any]], dict[str, Any]],
        decode: Callable[[bytes], Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        admit: Admit | None = None,
    ) -> Entry:
        def mutate(old: Entry) -> Any:
            new = _patched(old, apply_patch, decode)
            rv = new.metadata.resource_version
            if rv and rv != str(old.rev):
                parse_rv(rv, "metadata.resourceVersion")  # a malformed one is 400, a stale one 409
                raise self._conflict(name)
            _check_identity(namespace, name, new)
            return new

        return await self.guaranteed_update(
            namespace, name, mutate, expected=None, subresource=subresource, dry_run=dry_run, admit=admit
        )

    async def guaranteed_update(
        self,
        namespace: str,
        name: str,
        mutate: Callable[[Entry], Any],
        *,
        expected: int | None,
        subresource: str | None,
        dry_run: bool,
        admit: Admit | None = None,
    ) -> Entry:
        """Write `mutate(current)` over the current object with a compare-and-swap, retrying lost races.

        `expected` pins the revision the caller read (a lost race is then 409 Conflict). An unchanged
        result is no write (the same entry back); a result with a deletion timestamp and no finalizers
        completes the deletion. `admit` (admission, `kos.apiserver.auth.gate.Admit`) judges each attempt's
        final object against the current one before anything is written (an unchanged result as the current
        object against itself). Raises NotFound, Conflict, Invalid and what `mutate` and `admit` raise.
        """
        ckey, key = f"{namespace}/{name}", self.key(namespace, name)
        for attempt in range(MAX_RETRIES):
            old = self.cache.get(ckey)
            if old is None or (expected is not None and old.rev < expected) or (attempt == 0 and expected is None):
                await self.cacher.sync()  # (inline, not a helper coroutine: status updates are a hot path)
                old = self.cache.get(ckey)
            old = self._check_current(old, name, expected)
            new = prepare_update(self.strategy, name, mutate(old), old.obj, subresource, self.clock.now())
            if admit is not None:
                admit(old.obj if new is None else new, old.obj)
            if new is None:
                return old  # nothing changed: no write, no event, same resourceVersion
            guards = await self.rules.update_guards(new, old, subresource) if self.rules is not None else ()
            if dry_run:
                return self.cache.entry_for(new, old.rev)
            try:
                if new.metadata.deletion_timestamp is not None and not new.metadata.finalizers:
                    d = await _store(self.store.delete(key, old.rev, guards))
                    return self.cache.entry_for(new, d.revision)
                rev = await _store(self.store.update(key, codec.encode(new), old.rev, guards))
                return self._written(self.cache.entry_for(new, rev))
            except RevisionMismatch as e:
                if expected is not None:
                    raise self._conflict(name) from None
                await self.cacher.wait_for(e.current.mod_revision, timeout=WRITE_VISIBLE_TIMEOUT)
            except GuardFailed:  # another object moved on: judge again from a cache that has seen it
                await self.cacher.sync()
            except KeyNotFound:
                raise self._not_found(name) from None
        raise self._conflict(name, "too many concurrent writers; please try again")

    def _check_current(self, old: Entry | None, name: str, expected: int | None) -> Entry:
        """`old`, unless it is missing (NotFound) or not at the pinned revision `expected` (Conflict)."""
        if old is None:
            raise self._not_found(name)
        if expected is not None and old.rev != expected:
            raise self._conflict(name)
        return old

    # --- delete ------------------------------------------------------------------------------

    async def delete(
        self, namespace: str, name: str, req: DeleteRequest, *, from_cache: bool = False
    ) -> tuple[Entry, bool]:
        """Delete, or start deleting when finalizers remain; (object, whether it is gone).

        The first attempt works on the cached object, as kube-apiserver's cacher hands etcd3's `Delete` its
        cached copy (`cachedExistingObject`, k8s.io/apiserver storage/etcd3 store.go): the store's revision
        precondition makes a stale copy a lost race (retried from a cache that has caught up), so no
        consistent read is needed first; a rule's guards on other objects fail the same way. Everything
        else is judged again after the cache is brought up to every acknowledged write (`Cacher.sync`), as
        before: an object the cache does not hold (so a delete never misses one created a moment ago), a
        failed precondition, a dry run, and a delete that would only mark the object (finalizers, a rule's
        hold, "already being deleted", which writes nothing). `from_cache` never waits, for callers whose
        view *is* the cache (the garbage collector). Raises NotFound and Conflict (a failed precondition).
        """
        ckey = f"{namespace}/{name}"
        synced = from_cache
        for _ in range(MAX_RETRIES):
            old = self.cache.get(ckey)
            if not synced and (old is None or req.dry_run):
                await self.cacher.sync()
                synced = True
                old = self.cache.get(ckey)
            if old is None:
                raise self._not_found(name)
            try:
                check_preconditions(self.resource.plural, name, old, req)
            except Conflict:
                if synced:
                    raise
                await self.cacher.sync()  # judged on a copy that may be stale: judge again on a current one
                synced = True
                continue
            guards, hold = self.rules.delete_guards(old) if self.rules is not None else ((), "")
            finalizers = finalizers_for(old.obj.metadata.finalizers, req.propagation_policy, hold)
            if not synced and finalizers:  # not a plain delete: judge it (and the rules' hold) on a current view
                await self.cacher.sync()
                synced = True
                continue
            key = self.key(namespace, name)
            try:
                if finalizers:
                    return await self._mark_deleting(key, old, finalizers, guards, req.dry_run)
                if req.dry_run:
                    return old, True
                d = await _store(self.store.delete(key, old.rev, guards))  # inline: the common, hot path
                return self._written(old.at_revision(d.revision)), True
            except RevisionMismatch as e:
                await self.cacher.wait_for(e.current.mod_revision, timeout=WRITE_VISIBLE_TIMEOUT)
            except GuardFailed:  # another object moved on: judge again from a cache that has seen it
                await self.cacher.sync()
            except KeyNotFound:
                raise self._not_found(name) from None
        raise self._conflict(name, "too many concurrent writers; please try again")

    async def _mark_deleting(
        self, key: str, old: Entry, finalizers: tuple[str, ...], guards: Sequence[Guard], dry_run: bool
    ) -> tuple[Entry, bool]:
        """Mark `old` as being deleted, held by `finalizers` (`deletion.marked_deleting`); (object, False)."""
        if old.obj.metadata.deletion_timestamp is not None and finalizers == old.obj.metadata.finalizers:
            return old, False
        new = marked_deleting(old.obj, finalizers, self.clock.now())
        if dry_run:
            return self.cache.entry_for(new, old.rev), False
        rev = await _store(self.store.update(key, codec.encode(new), old.rev, guards))
        return self._written(self.cache.entry_for(new, rev)), False

    async def delete_collection(self, namespace: str | None, opts: ListOptions, req: DeleteRequest) -> list[Entry]:
        """Delete what a list with `opts` returns (as store.go DeleteCollection: `limit` and `continue` count)."""
        out = []
        for e in (await self.list_objects(namespace, opts)).entries:
            try:
                gone, _ = await self.delete(e.namespace, e.obj.metadata.name, req)
                out.append(gone)
            except NotFound:
                continue
        return out


def _patched(
    old: Entry, apply_patch: Callable[[dict[str, Any]], dict[str, Any]], decode: Callable[[bytes], Any]
) -> Any:
    """`old`'s JSON form with the patch applied, decoded as the kind (BadRequest if it is not a JSON object)."""
    patched = apply_patch(msgspec.json.decode(old.json()))
    if not isinstance(patched, dict):
        raise BadRequest("the patch must produce a JSON object")
    return decode(msgspec.json.encode(patched))


async def _store(op: Awaitable[Any]) -> Any:
    """The store's answer; a store failure other than a compare-and-swap outcome is 503 ServiceUnavailable."""
    try:
        return await op
    except (KeyExists, KeyNotFound, RevisionMismatch, GuardFailed):
        raise  # outcomes of the compare-and-swap, which the callers handle
    except StoreError as e:
        raise errors.ServiceUnavailable(f"storage is unavailable: {e}") from e


def _check_identity(namespace: str, name: str, obj: Any) -> None:
    """BadRequest unless `obj`'s name and namespace, where given, are those of the URL."""
    meta = obj.metadata
    if meta.name and meta.name != name:
        raise BadRequest(f"the name of the object ({meta.name}) does not match the name on the URL ({name})")
    _check_namespace(namespace, meta.namespace)


def _check_namespace(namespace: str, in_object: str) -> None:
    if in_object and in_object != namespace:
        raise BadRequest(
            f"the namespace of the provided object ({in_object}) does not match the namespace sent on"
            f" the request ({namespace})"
        )
