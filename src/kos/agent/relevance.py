"""Which VNIs matter to this node, and the per-VNI watches that follow their remote NAs.

A VNI is relevant on a node while the node has a local NA with an address in
it. The first such NA starts a watch of the VNI's remote NAs
(`spec.node!=<node>,status.addressVNI=<vni>,status.ipv4!=,status.hostIP!=` in
the VN's namespace, a streaming list: the current state, then the changes, in
one request); the last one's departure stops it and requeues its remote NAs, so
their interfaces go. The tracker also records which watches hold each NA
(`informers_of`): an NA held by two at once is moving between them, and the agent waits
for the move to finish.

The event handlers here run for every watch event of the node: they do the
bookkeeping in place and enqueue the NA's key, nothing more.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

from kos.agent import translate
from kos.agent.interfaces import key_of
from kos.agent.metrics import BoundMetrics
from kos.api.types import NetworkAttachment
from kos.client.controller import Retry
from kos.client.informer import Informer
from kos.client.reflector import ListWatcher
from kos.client.workqueue import WorkQueue
from kos.util.clock import Clock

LOCAL = 0
"""The pseudo-VNI of the local watch."""
NONE_HELD: frozenset[int] = frozenset()
"""What `informers_of` holds for an NA no watch holds."""
INDEX_OWNER = "ifcOwnerData"
"""The index of both kinds of watch: which NA owns the interface of `translate.*_owner_key`."""


class VirtualNetwork:
    """A relevant VNI: the local NAs that make it relevant, and the watch of its remote NAs."""

    def __init__(
        self, vni: int, namespace: str, informer: Informer[NetworkAttachment], since: datetime.datetime
    ) -> None:
        self.vni = vni
        self.namespace = namespace
        self.informer = informer
        self.locals: set[str] = set()
        self.remotes: set[str] = set()
        self.relevant_since = since
        """When the VNI became relevant here: remote interfaces of older NAs are due to this, not to their writes."""


class RelevanceTracker:
    """The relevant VNIs of one node (`vns`), their watches, and which watch holds which NA (`informers_of`)."""

    def __init__(
        self,
        api: ListWatcher,
        node: str,
        queue: WorkQueue[str],
        metrics: BoundMetrics,
        clock: Clock,
        local_departed: asyncio.Event,
    ) -> None:
        self.api = api
        self.node = node
        self.queue = queue
        self.m = metrics
        self.clock = clock
        self.local_departed = local_departed
        """Set whenever an NA leaves the local watch (it may have lost its address: the status sweep looks)."""
        self.informers_of: dict[str, set[int]] = {}
        """NA key → the watches (VNIs, LOCAL for the local one) whose caches hold it."""
        self.vns: dict[int, VirtualNetwork] = {}
        self.local_vni: dict[str, int] = {}
        """Local NA key → the VNI it makes relevant."""
        self.local_revision: Callable[[], str] = lambda: ""
        """The local watch's revision ("" before it has one); set by the agent once its local watch exists."""

    # --- the local watch's add and delete handlers -------------------------------------------

    def local_added(self, na: NetworkAttachment) -> None:
        k = key_of(na)
        self.informers_of.setdefault(k, set()).add(LOCAL)
        self.queue.add(k)

    def local_deleted(self, na: NetworkAttachment) -> None:
        k = key_of(na)
        held = self.informers_of.get(k)
        if held is not None:
            held.discard(LOCAL)
            if not held:
                del self.informers_of[k]
        self.local_departed.set()
        self.queue.add(k)

    # --- relevance ---------------------------------------------------------------------------

    def relevant(self, key: str, na: NetworkAttachment) -> None:
        """Local NA `key` makes its VNI relevant: start the VNI's watch if it is the first.

        The watch's initial state need only be as new as what the local watch has shown (at least `na`,
        the version that made the VNI relevant), not a consistent read: its events bring everything later,
        and so the apiserver answers from its watch cache without reading the store's revision (an etcd
        `Range` per VNI a node joins). On the same apiserver that revision is one its cache has; on another
        replica, one it waits for.

        Raises Retry when our view puts the VNI in another namespace (the NA's own sync sorts it out).
        """
        vni = na.status.address_vni
        vn = self.vns.get(vni)
        if vn is None:
            informer: Informer[NetworkAttachment] = Informer(
                self.api, NetworkAttachment, namespace=na.metadata.namespace,
                field_selector=f"spec.node!={self.node},status.addressVNI={vni},status.ipv4!=,status.hostIP!=",
                indexers={INDEX_OWNER: lambda o: [translate.remote_owner_key(o.status.host_ip, o.status.ipv4)]},
                name=f"{self.node}/vni-{vni}", streaming_list=True,
                min_resource_version=self.local_revision() or na.metadata.resource_version,
            )  # fmt: skip
            vn = VirtualNetwork(vni, na.metadata.namespace, informer, self.clock.now())
            self.vns[vni] = vn
            informer.add_handlers(*self._remote_handlers(vn))
            informer.start()
            self.m.vni_watch_starts.labels(self.m.node).inc()
        elif vn.namespace != na.metadata.namespace:
            raise Retry(f"VNI {vni} belongs to namespace {vn.namespace}, not {na.metadata.namespace}, in our view")
        vn.locals.add(key)
        self.local_vni[key] = vni

    async def sync(self, key: str, local: NetworkAttachment | None) -> None:
        """Bring the VN state up to local NA `key`'s current version `local` (None: gone from the local watch)."""
        vni = self.local_vni.get(key)
        if vni is not None and (local is None or local.status.address_vni != vni):
            del self.local_vni[key]
            vn = self.vns.get(vni)
            if vn is not None:
                vn.locals.discard(key)
                if not vn.locals:
                    await self._irrelevant(vn)
        if local is not None and key not in self.local_vni:
            self.relevant(key, local)

    async def _irrelevant(self, vn: VirtualNetwork) -> None:
        """The VN is no longer relevant here: stop watching it, requeue its remotes (their interfaces go)."""
        vni = vn.vni
        del self.vns[vni]
        await vn.informer.stop()
        self.m.vni_watch_stops.labels(self.m.node).inc()
        for r in vn.remotes:
            held = self.informers_of.get(r)
            if held is not None:
                held.discard(vni)
                if not held:
                    del self.informers_of[r]
            self.queue.add(r)

    async def stop(self) -> None:
        for vn in list(self.vns.values()):
            await vn.informer.stop()

    # --- the per-VNI watches' handlers -------------------------------------------------------

    def _remote_handlers(self, vn: VirtualNetwork) -> tuple[Any, Any, Any]:
        def current() -> bool:
            return self.vns.get(vn.vni) is vn

        def added(na: NetworkAttachment) -> None:
            if not vn.informer.has_synced():
                self.m.vni_watch_initial_objects.labels(self.m.node).inc()
            if current():
                k = key_of(na)
                self.informers_of.setdefault(k, set()).add(vn.vni)
                vn.remotes.add(k)
                self.queue.add(k)

        def updated(old: NetworkAttachment, new: NetworkAttachment) -> None:
            if current() and (old.status.ipv4 != new.status.ipv4 or old.status.host_ip != new.status.host_ip
                              or old.metadata.uid != new.metadata.uid):  # fmt: skip
                self.queue.add(key_of(new))

        def deleted(na: NetworkAttachment) -> None:
            if current():
                k = key_of(na)
                held = self.informers_of.get(k)
                if held is not None:
                    held.discard(vn.vni)
                    if not held:
                        del self.informers_of[k]
                vn.remotes.discard(k)
                self.queue.add(k)

        return added, updated, deleted
