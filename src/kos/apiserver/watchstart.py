"""Opening a watch on the watch cache with Kubernetes' start semantics, and the BOOKMARK line.

resourceVersion "" is a consistent start, "0" any start, N a start at N; without `sendInitialEvents`
the first two begin with the current objects as ADDED and N replays what followed N.
`sendInitialEvents=true` begins with the current objects (at least as new as N), and ends them with
an `initial-events-end` BOOKMARK when bookmarks are allowed (the cacher's
getBookmarkAfterResourceVersionLockedFunc); `sendInitialEvents=false` sends no initial objects: from
N it replays what followed N, from "" or "0" it starts now. The watcher is filed in the cache's
watcher index before the next event is applied, so it misses nothing after its start.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from kos.api import watchframe
from kos.api.resources import Resource
from kos.api.selectors import FieldSelector, LabelSelector
from kos.apiserver.cache import Cacher, ResourceCache, deliver
from kos.apiserver.reads import check_scope, parse_rv
from kos.apiserver.watchers import Watcher
from kos.util.clock import Clock


@dataclasses.dataclass(frozen=True, slots=True)
class WatchOptions:
    label_selector: LabelSelector = LabelSelector()
    field_selector: FieldSelector = FieldSelector()
    resource_version: str = ""
    allow_bookmarks: bool = False
    send_initial_events: bool | None = None


async def open_watch(
    cacher: Cacher,
    cache: ResourceCache,
    namespace: str | None,
    opts: WatchOptions,
    *,
    render: Any = None,
    max_bytes: int,
    clock: Clock,
) -> Watcher:
    """A watcher of `cache`'s kind in `namespace` (None: every namespace), primed and filed (see the module).

    Raises BadRequest for a malformed resourceVersion and what waiting for a revision raises.
    """
    check_scope(namespace)
    rv = opts.resource_version
    initial = opts.send_initial_events
    replay_from: int | None = None
    if rv == "":
        await cacher.sync()
        initial = True if initial is None else initial
    elif rv == "0":
        initial = True if initial is None else initial
    else:
        n = parse_rv(rv)
        await cacher.wait_for_client_revision(n)
        initial = bool(initial)
        replay_from = None if initial else n
    w = Watcher(
        cache.resource,
        namespace=namespace,
        label_selector=opts.label_selector,
        field_selector=opts.field_selector,
        allow_bookmarks=opts.allow_bookmarks,
        max_bytes=max_bytes,
        render=render,
        clock=clock,
    )
    rev = cacher.revision
    if initial:
        _send_initial(w, cache, namespace, opts, rev)
    elif replay_from is not None:
        for ev in cache.events_after(replay_from):
            deliver(w, ev)
    w.last_rev = rev
    cache.watchers.add(w)
    return w


def _send_initial(w: Watcher, cache: ResourceCache, namespace: str | None, opts: WatchOptions, rev: int) -> None:
    """The current objects as ADDED, then the `initial-events-end` BOOKMARK if `sendInitialEvents` asked."""
    for e in cache.select(namespace, opts.label_selector, opts.field_selector):
        if w.render is not None:
            w.push(w.render("ADDED", e), e.rev)
        else:
            w.push(watchframe.frame(watchframe.ADDED, e.json()), e.rev)
    if opts.send_initial_events and opts.allow_bookmarks:
        w.push(bookmark(cache.resource, rev, initial_events_end=True), rev)


def bookmark(resource: Resource, rev: int, *, initial_events_end: bool = False) -> bytes:
    """A BOOKMARK watch line for `resource` at `rev` (with the `k8s.io/initial-events-end` annotation if asked)."""
    meta: dict[str, Any] = {"resourceVersion": str(rev)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}
    return watchframe.frame(watchframe.BOOKMARK, msgspec.json.encode(obj))


def stop_watch(cache: ResourceCache, w: Watcher) -> None:
    """Take `w` out of the cache's watcher index and close it."""
    cache.watchers.remove(w)
    w.close()
