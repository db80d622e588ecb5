"""The generic registry: Kubernetes object semantics for any kind, over a Store and the watch cache.

One `Registry` per kind binds its strategy to the store (sample-apiserver's
`NewREST`). Reads come from the watch cache; writes are compare-and-swap on the
store with the revision of the cached object they were computed from, retried
on a lost race when the client did not pin a resourceVersion (Kubernetes'
GuaranteedUpdate). Objects are stored without resourceVersion; the store's mod
revision is their resourceVersion.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgspec

from kos.api import cidr, codec, errors, field
from kos.api.errors import BadRequest, Conflict, Invalid, NotFound
from kos.api.field import FieldError
from kos.api.resources import Resource
from kos.api.selectors import FieldSelector, LabelSelector
from kos.api.types import API_VERSION
from kos.apiserver.cache import Cacher, Entry, ResourceCache, deliver
from kos.apiserver.strategy import Strategy
from kos.apiserver.watchers import Watcher
from kos.storage.interface import Guard, GuardFailed, KeyExists, KeyNotFound, RevisionMismatch, Store, StoreError
from kos.util.clock import Clock

log = logging.getLogger(__name__)

MAX_RETRIES = 32
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def parse_rv(value: str, what: str = "resourceVersion") -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise BadRequest(f"invalid {what} {value!r}: must be a non-negative integer returned by the server")
    return int(value)


@dataclasses.dataclass(frozen=True, slots=True)
class ListOptions:
    label_selector: LabelSelector = LabelSelector()
    field_selector: FieldSelector = FieldSelector()
    resource_version: str = ""
    resource_version_match: str = ""
    limit: int = 0
    continue_token: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class WatchOptions:
    label_selector: LabelSelector = LabelSelector()
    field_selector: FieldSelector = FieldSelector()
    resource_version: str = ""
    allow_bookmarks: bool = False
    send_initial_events: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteRequest:
    uid: str | None = None
    resource_version: str | None = None
    propagation_policy: str = "Background"
    dry_run: bool = False


@dataclasses.dataclass(slots=True)
class ListResult:
    entries: list[Entry]
    revision: int
    continue_token: str = ""
    remaining: int | None = None


class SubnetAdmission:
    """Create-time conflict check for Subnets against the up-to-date cache (ARCHITECTURE §4).

    Creates are serialised within this server, and the check runs after the cache
    has caught up with the store, so two conflicting subnets are never both
    admitted by one server; across servers the subnet validator is the authority.
    """

    def __init__(self, cacher: Cacher) -> None:
        self.cacher = cacher
        self.lock = asyncio.Lock()

    def conflicts(self, obj: Any) -> list[FieldError]:
        try:
            mine = cidr.parse_block(obj.spec.ipv4)
        except cidr.CIDRError:
            return []
        cache = self.cacher.caches["subnets"]
        out: list[FieldError] = []
        for key in sorted(cache.index["spec.vni"].get(str(obj.spec.vni), ())):
            other = cache.items[key].obj
            ref = f"{other.metadata.namespace}/{other.metadata.name}"
            if ref == f"{obj.metadata.namespace}/{obj.metadata.name}":
                continue
            if other.metadata.namespace != obj.metadata.namespace:
                out.append(field.forbidden(
                    "spec.vni",
                    f"subnets with same VNI must be within same namespace, but {ref} has the same VNI and a"
                    " different namespace",
                ))  # fmt: skip
            try:
                theirs = cidr.parse_block(other.spec.ipv4)
            except cidr.CIDRError:
                continue
            if mine.overlaps(theirs):
                out.append(field.forbidden(
                    "spec.ipv4",
                    f"subnets with same VNI must have disjoint CIDRs, but CIDR overlaps with {ref}'s"
                    f" ({other.spec.ipv4})",
                ))  # fmt: skip
        return out


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

    async def _at_least(self, rv: str) -> None:
        if rv == "":
            await self.cacher.sync()
        elif rv != "0":
            await self.cacher.wait_for_client_revision(parse_rv(rv))

    async def get(self, namespace: str, name: str, *, resource_version: str = "") -> Entry:
        await self._at_least(resource_version)
        e = self.cache.get(f"{namespace}/{name}")
        if e is None:
            raise self._not_found(name)
        return e

    async def list_objects(self, namespace: str | None, opts: ListOptions) -> ListResult:
        """The selected objects of `namespace` (None: every namespace); `opts` as `listoptions` validated them."""
        _scope(namespace)
        rv, match = opts.resource_version, opts.resource_version_match
        if opts.continue_token:
            if rv and rv != "0":
                raise BadRequest("specifying resourceVersion is not allowed when using continue")
            snap_rev, after_key = _decode_continue(opts.continue_token)
            if snap_rev == CONTINUE_AT_LATEST:  # the token of a 410: go on from the current state
                await self.cacher.sync()
                return await self._list_at(namespace, opts, self.cacher.revision, after_key)
            if snap_rev > self.cacher.revision:
                raise BadRequest(
                    f"invalid continue token: it names revision {snap_rev}, which this server has not reached; use the"
                    " token from a previous list response"
                )
            return await self._list_at(namespace, opts, snap_rev, after_key)
        if match == "Exact":
            exact = parse_rv(rv)
            await self.cacher.wait_for_client_revision(exact)
            return await self._list_at(namespace, opts, exact, "")
        await self._at_least(rv)
        entries = self.cache.select(namespace, opts.label_selector, opts.field_selector)
        return self._page(entries, self.cacher.revision, opts)

    async def _list_at(self, namespace: str | None, opts: ListOptions, rev: int, after_key: str) -> ListResult:
        if rev == self.cacher.revision:
            entries = self.cache.select(namespace, opts.label_selector, opts.field_selector, after_key=after_key)
            return self._page(entries, rev, opts)
        try:
            snap = self.cache.snapshot_at(rev, self.cacher.revision)
        except errors.Expired:
            if opts.continue_token:
                raise errors.Expired(
                    INCONSISTENT_CONTINUE, continue_token=_encode_continue(CONTINUE_AT_LATEST, after_key)
                ) from None
            raise
        out = []
        for k in sorted(snap):
            if after_key and k <= after_key:
                continue
            e = snap[k]
            if namespace is not None and e.namespace != namespace:
                continue
            if not opts.label_selector.matches(e.labels) or not opts.field_selector.matches(e.fields):
                continue
            out.append(e)
        return self._page(out, rev, opts)

    def _page(self, entries: list[Entry], rev: int, opts: ListOptions) -> ListResult:
        if opts.limit and len(entries) > opts.limit:
            page = entries[: opts.limit]
            return ListResult(page, rev, _encode_continue(rev, page[-1].key), len(entries) - opts.limit)
        return ListResult(entries, rev)

    async def watch(self, namespace: str | None, opts: WatchOptions, *, render: Any = None) -> Watcher:
        """A watcher of `namespace` (None: every namespace) with Kubernetes' start semantics.

        resourceVersion "" is a consistent start, "0" any start, N a start at N; without
        `sendInitialEvents` the first two begin with the current objects as ADDED and N replays what
        followed N. `sendInitialEvents=true` begins with the current objects (at least as new as N),
        and ends them with an `initial-events-end` BOOKMARK when bookmarks are allowed (the cacher's
        getBookmarkAfterResourceVersionLockedFunc); `sendInitialEvents=false` sends no initial
        objects: from N it replays what followed N, from "" or "0" it starts now.
        """
        _scope(namespace)
        rv = opts.resource_version
        initial = opts.send_initial_events
        replay_from: int | None = None
        if rv == "":
            await self.cacher.sync()
            initial = True if initial is None else initial
        elif rv == "0":
            initial = True if initial is None else initial
        else:
            n = parse_rv(rv)
            await self.cacher.wait_for_client_revision(n)
            initial = bool(initial)
            replay_from = None if initial else n
        w = Watcher(
            self.resource,
            namespace=namespace,
            label_selector=opts.label_selector,
            field_selector=opts.field_selector,
            allow_bookmarks=opts.allow_bookmarks,
            max_bytes=self.watcher_max_bytes,
            render=render,
            clock=self.clock,
        )
        rev = self.cacher.revision
        if initial:
            for e in self.cache.select(namespace, opts.label_selector, opts.field_selector):
                if render is not None:
                    w.push(render("ADDED", e), e.rev)
                else:
                    w.push(b'{"type":"ADDED","object":' + e.json() + b"}\n", e.rev)
            if opts.send_initial_events and opts.allow_bookmarks:
                w.push(self.bookmark(rev, initial_events_end=True), rev)
        elif replay_from is not None:
            for ev in self.cache.events_after(replay_from):
                deliver(w, ev)
        w.last_rev = rev
        self.cache.watchers.add(w)
        return w

    def bookmark(self, rev: int, *, initial_events_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rev)}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": self.resource.kind, "apiVersion": API_VERSION, "metadata": meta}
        return b'{"type":"BOOKMARK","object":' + msgspec.json.encode(obj) + b"}\n"

    def stop_watch(self, w: Watcher) -> None:
        self.cache.watchers.remove(w)
        w.close()

    # --- create ------------------------------------------------------------------------------

    async def create(self, namespace: str, obj: Any, *, dry_run: bool = False) -> Entry:
        meta = obj.metadata
        if meta.namespace and meta.namespace != namespace:
            raise BadRequest(
                f"the namespace of the provided object ({meta.namespace}) does not match the namespace sent on"
                f" the request ({namespace})"
            )
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
                    return await self._create_admitted(prepared, dry_run)
                if dry_run:
                    return self.cache.entry_for(prepared, 0)
                rev = await self._store(self.store.create(self.key(namespace, name), codec.encode(prepared)))
                return self._written(self.cache.entry_for(prepared, rev))
            except KeyExists:
                if generate:
                    continue
                raise errors.already_exists(self.resource.plural, name) from None
        raise errors.already_exists(self.resource.plural, meta.generate_name + "*")

    async def _create_admitted(self, obj: Any, dry_run: bool) -> Entry:
        assert self.admission is not None
        async with self.admission.lock:
            await self.cacher.sync()
            if self.cache.get(f"{obj.metadata.namespace}/{obj.metadata.name}") is not None:
                raise KeyExists(obj.metadata.name)
            errs = self.admission.conflicts(obj)
            if errs:
                raise self._invalid(obj.metadata.name, errs)
            if dry_run:
                return self.cache.entry_for(obj, 0)
            key = self.key(obj.metadata.namespace, obj.metadata.name)
            rev = await self._store(self.store.create(key, codec.encode(obj)))
            entry = self._written(self.cache.entry_for(obj, rev))
            await self.cacher.wait_for(rev, timeout=10.0)
            return entry

    def _written(self, entry: Entry) -> Entry:
        """What this registry just stored, as the cache will hold it: handed on so the cache need not decode it."""
        self.cacher.written(entry)
        return entry

    @staticmethod
    async def _store(op: Awaitable[Any]) -> Any:
        try:
            return await op
        except (KeyExists, KeyNotFound, RevisionMismatch, GuardFailed):
            raise  # outcomes of the compare-and-swap, which the callers handle
        except StoreError as e:
            raise errors.ServiceUnavailable(f"storage is unavailable: {e}") from e

    # --- update and patch --------------------------------------------------------------------

    async def update(
        self, namespace: str, name: str, obj: Any, *, subresource: str | None = None, dry_run: bool = False
    ) -> Entry:
        rv = obj.metadata.resource_version
        if not rv and subresource is None:
            raise self._invalid(
                name,
                [field.invalid("metadata.resourceVersion", "", "must be specified for an update")],
            )
        expected = parse_rv(rv, "metadata.resourceVersion") if rv else None
        self._check_identity(namespace, name, obj)
        return await self.guaranteed_update(
            namespace, name, lambda _old: obj, expected=expected, subresource=subresource, dry_run=dry_run
        )

    async def patch(
        self,
        namespace: str,
        name: str,
        apply_patch: Callable[[dict[str, Any]], dict[str, Any]],
        decode: Callable[[bytes], Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Entry:
        def mutate(old: Entry) -> Any:
            doc = msgspec.json.decode(old.json())
            patched = apply_patch(doc)
            if not isinstance(patched, dict):
                raise BadRequest("the patch must produce a JSON object")
            new = decode(msgspec.json.encode(patched))
            rv = new.metadata.resource_version
            if rv and rv != str(old.rev):
                parse_rv(rv, "metadata.resourceVersion")  # a malformed one is a 400, another one a 409
                raise _Precondition()
            self._check_identity(namespace, name, new)
            return new

        return await self.guaranteed_update(
            namespace, name, mutate, expected=None, subresource=subresource, dry_run=dry_run,
        )  # fmt: skip

    def _check_identity(self, namespace: str, name: str, obj: Any) -> None:
        meta = obj.metadata
        if meta.name and meta.name != name:
            raise BadRequest(f"the name of the object ({meta.name}) does not match the name on the URL ({name})")
        if meta.namespace and meta.namespace != namespace:
            raise BadRequest(
                f"the namespace of the provided object ({meta.namespace}) does not match the namespace sent on"
                f" the request ({namespace})"
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
    ) -> Entry:
        key = self.key(namespace, name)
        ckey = f"{namespace}/{name}"
        for attempt in range(MAX_RETRIES):
            old = self.cache.get(ckey)
            if old is None or (expected is not None and old.rev < expected) or (attempt == 0 and expected is None):
                await self.cacher.sync()
                old = self.cache.get(ckey)
            if old is None:
                raise self._not_found(name)
            if expected is not None and old.rev != expected:
                raise self._conflict(name)
            try:
                incoming = mutate(old)
            except _Precondition:
                raise self._conflict(name) from None
            their_uid = incoming.metadata.uid
            if their_uid and their_uid != old.obj.metadata.uid:
                raise errors.precondition_failed(self.resource.plural, name, "UID", their_uid, old.obj.metadata.uid)
            now = self.clock.now()
            if subresource == "status":
                new = self.strategy.prepare_for_status_update(incoming, old.obj, now)
                errs: list[FieldError] = []
            else:
                new = self.strategy.prepare_for_update(incoming, old.obj, now)
                errs = self.strategy.validate_update(new, old.obj)
            if errs:
                raise self._invalid(name, errs)
            new = codec.replace_meta(new, resource_version="")
            if new == codec.replace_meta(old.obj, resource_version=""):
                return old  # nothing changed: no write, no event, same resourceVersion
            guards = await self.rules.update_guards(new, old, subresource) if self.rules is not None else ()
            if dry_run:
                return self.cache.entry_for(new, old.rev)
            try:
                if new.metadata.deletion_timestamp is not None and not new.metadata.finalizers:
                    d = await self._store(self.store.delete(key, old.rev, guards))
                    return self.cache.entry_for(new, d.revision)
                rev = await self._store(self.store.update(key, codec.encode(new), old.rev, guards))
                return self._written(self.cache.entry_for(new, rev))
            except RevisionMismatch as e:
                if expected is not None:
                    raise self._conflict(name) from None
                await self.cacher.wait_for(e.current.mod_revision, timeout=10.0)
            except GuardFailed:  # another object moved on: judge again from a cache that has seen it
                await self.cacher.sync()
            except KeyNotFound:
                raise self._not_found(name) from None
        raise self._conflict(name, "too many concurrent writers; please try again")

    # --- delete ------------------------------------------------------------------------------

    async def delete(
        self, namespace: str, name: str, req: DeleteRequest, *, from_cache: bool = False
    ) -> tuple[Entry, bool]:
        """Delete, or start deleting when finalizers remain; (object, whether it is gone).

        A client's delete first brings the cache up to every acknowledged write, so it never misses
        an object created a moment ago. `from_cache` skips that wait, for callers whose view *is* the
        cache (the garbage collector): the store's revision precondition still makes a stale view
        retry rather than delete the wrong version.
        """
        key = self.key(namespace, name)
        ckey = f"{namespace}/{name}"
        for attempt in range(MAX_RETRIES):
            if attempt == 0 and not from_cache:
                await self.cacher.sync()
            old = self.cache.get(ckey)
            if old is None:
                raise self._not_found(name)
            meta = old.obj.metadata
            if req.uid is not None and req.uid != meta.uid:
                raise errors.precondition_failed(self.resource.plural, name, "UID", req.uid, meta.uid)
            if req.resource_version is not None and req.resource_version != str(old.rev):
                raise errors.precondition_failed(
                    self.resource.plural, name, "ResourceVersion", req.resource_version, str(old.rev)
                )
            finalizers = list(meta.finalizers)
            if req.propagation_policy == "Orphan" and ORPHAN_FINALIZER not in finalizers:
                finalizers.append(ORPHAN_FINALIZER)
            elif req.propagation_policy == "Foreground" and FOREGROUND_FINALIZER not in finalizers:
                finalizers.append(FOREGROUND_FINALIZER)
            guards: Sequence[Guard] = ()
            if self.rules is not None:
                guards, hold = self.rules.delete_guards(old)
                if hold and hold not in finalizers:
                    finalizers.append(hold)
            try:
                if finalizers:
                    if meta.deletion_timestamp is not None and tuple(finalizers) == meta.finalizers:
                        return old, False
                    new = codec.replace_meta(
                        old.obj,
                        resource_version="",
                        finalizers=tuple(finalizers),
                        deletion_timestamp=meta.deletion_timestamp or self.clock.now().replace(microsecond=0),
                        deletion_grace_period_seconds=0,
                    )
                    if req.dry_run:
                        return self.cache.entry_for(new, old.rev), False
                    rev = await self._store(self.store.update(key, codec.encode(new), old.rev, guards))
                    return self._written(self.cache.entry_for(new, rev)), False
                if req.dry_run:
                    return old, True
                d = await self._store(self.store.delete(key, old.rev, guards))
                return self._written(old.at_revision(d.revision)), True
            except RevisionMismatch as e:
                await self.cacher.wait_for(e.current.mod_revision, timeout=10.0)
            except GuardFailed:  # another object moved on: judge again from a cache that has seen it
                await self.cacher.sync()
            except KeyNotFound:
                raise self._not_found(name) from None
        raise self._conflict(name, "too many concurrent writers; please try again")

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


class _Precondition(Exception):
    pass


CONTINUE_AT_LATEST = -1
"""The revision of a continue token that goes on from the current state (etcd3 store's continueRV < 0)."""

INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list"
    " without the continue parameter, or use the continue token in this response to retrieve the remainder of"
    " the results. Continuing with the provided token results in an inconsistent list - objects that were"
    " created, modified, or deleted between the time the first chunk was returned and now may show up in the"
    " list."
)
"""k8s.io/apiserver etcd3 store's `inconsistentContinue`: the 410 for an expired continue token (kubernetes #66981).

Its Status carries, in `metadata.continue`, a token that lists the rest of the keys from the current
revision (`handleCompactedErrorForPaging`); the pages after it are consistent with that revision.
"""


def _scope(namespace: str | None) -> None:
    """None is every namespace (the cluster-wide path); an empty string is no namespace, never every one."""
    if namespace == "":
        raise BadRequest("an empty namespace names no namespace; leave the namespace out to address every one")


def _encode_continue(rev: int, last_key: str) -> str:
    raw = msgspec.json.encode({"v": "meta.k8s.io/v1", "rv": rev, "start": last_key})
    return base64.urlsafe_b64encode(raw).decode()


class _ContinueToken(msgspec.Struct, forbid_unknown_fields=True):
    v: str
    rv: int
    start: str


def _decode_continue(token: str) -> tuple[int, str]:
    """(revision, last key) of a token from `_encode_continue`; anything else is 400, never a 500."""
    try:
        if len(token) > 4096 or not token.isascii():
            raise ValueError
        raw = msgspec.json.decode(base64.urlsafe_b64decode(token.encode()), type=_ContinueToken)
        if raw.v != "meta.k8s.io/v1" or not (0 < raw.rv < 1 << 63 or raw.rv == CONTINUE_AT_LATEST):
            raise ValueError
    except (binascii.Error, ValueError, msgspec.DecodeError):  # msgspec.ValidationError is a DecodeError
        shown = token if len(token) <= 40 else token[:40] + "..."
        raise BadRequest(f"invalid continue token {shown!r}: use the token from a previous list response") from None
    return raw.rv, raw.start
