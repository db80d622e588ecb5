"""The connection agent: makes one node's fabric hold exactly what the API says it should (reference §5).

What a node needs: its *local* NAs (those with `spec.node` = this node that have
an address) as local interfaces, and for every VNI in which it has a local NA,
the *remote* NAs of that VNI (addressed, on other nodes, implemented there) as
remote interfaces. Nothing else (ARCHITECTURE §8, invariant 3).

How it learns it with the least traffic: one watch of its local NAs
(`spec.node=<node>,status.ipv4!=`), plus one watch per relevant VNI
(`spec.node!=<node>,status.addressVNI=<vni>,status.ipv4!=,status.hostIP!=` in
the VN's namespace), started when the first local NA of the VNI appears and
stopped — with its remote interfaces removed — when the last one goes. The
apiserver indexes exactly these selectors, so each change reaches only the
nodes that need it. Each watch starts as a streaming list (the current state,
then the changes, in one request), so a VNI becoming relevant costs one
subscription on the agent's multiplexed connection, not a list and a watch.
Counters (`kos_agent_vni_watch_{starts,stops,initial_objects}_total`) show how
often that happens and what it costs. Where a node's only NA of a VNI is
replaced again and again the VNI toggles relevance each time; keeping the watch
open across the gap was measured and rejected: in the driver's churn a VNI's
watch then receives more events in a second than a new streaming list sends
(docs/performance.md, "Large networks: the collapse at a lower rate").

Per NA (a level-triggered sync):
1. keep the VN state: which VNIs are relevant, and their watches;
2. find the NA's current version — in the local watch, in one VNI watch, or in
   none (gone or irrelevant); if two watches hold it, wait (a move is in flight);
3. make the fabric agree: delete an interface the NA can no longer own (and run
   its post-delete command), create the one it needs (and start its post-create
   command);
4. for a local NA, write what the node did into its status (MAC, interface
   name, host IP, errors, the post-create report); when the NA loses its address,
   clear those fields (ARCHITECTURE §12.4) — in a batched sweep.
A restart lists what the fabric holds, links each interface to its owner and
deletes the orphans before any worker runs, so nothing live is torn down.

The agent is the composition of one part per step: `relevance.RelevanceTracker`
(1, 2: the VN state and which watch holds each NA), `reconciler.InterfaceReconciler`
(3, with `launcher.ExecLauncher` for the commands) and `status.StatusWriter` (4,
with the sweeper). This class owns the local watch, the work queue and the
workers, and runs the steps in order for each key. It talks to the apiserver
through `kos.client.api.WatchAPI`, so it runs against `kos.testing.fakeapi` in
unit tests.
"""

from __future__ import annotations

import asyncio
import dataclasses

from kos.agent import translate
from kos.agent.interfaces import impl_differs, key_of
from kos.agent.launcher import ExecLauncher
from kos.agent.metrics import AgentMetricFamilies, BoundMetrics
from kos.agent.reconciler import InterfaceReconciler
from kos.agent.relevance import INDEX_OWNER, LOCAL, NONE_HELD, RelevanceTracker
from kos.agent.status import StatusWriter
from kos.api.types import NetworkAttachment
from kos.client.api import WatchAPI
from kos.client.controller import Retry, work
from kos.client.informer import Informer
from kos.client.workqueue import WorkQueue
from kos.fabric.interface import Fabric, FabricError
from kos.util.clock import REAL_CLOCK, Clock

__all__ = ["AgentSettings", "ConnectionAgent"]


@dataclasses.dataclass(frozen=True, slots=True)
class AgentSettings:
    node: str
    host_ip: str
    allowed_programs: frozenset[str] = frozenset()
    workers: int = 2


class ConnectionAgent:
    """One node's agent: `start()` syncs the watches, adopts the fabric's interfaces and starts the workers."""

    def __init__(
        self,
        api: WatchAPI,
        fabric: Fabric,
        settings: AgentSettings,
        metrics: AgentMetricFamilies,
        *,
        clock: Clock = REAL_CLOCK,
        metrics_node_label: str | None = None,
    ) -> None:
        self.api = api
        self.fabric = fabric
        self.settings = settings
        self.node = settings.node
        self.host_ip = settings.host_ip
        self.clock = clock
        label = metrics_node_label if metrics_node_label is not None else settings.node
        self.m = BoundMetrics(metrics, label)
        self.queue: WorkQueue[str] = WorkQueue("ca", clock=clock)
        self.status = StatusWriter(api, self.node, self.host_ip, self.m, clock)
        self.relevance = RelevanceTracker(api, self.node, self.queue, self.m, clock, self.status.sweep_wanted)
        self.launcher = ExecLauncher(self.node, settings.allowed_programs, self.m)
        self.reconciler = InterfaceReconciler(fabric, self.node, self.queue, self.relevance, self.launcher, self.m,
                                              clock)  # fmt: skip
        self.vns = self.relevance.vns
        """VNI → its `VirtualNetwork`, for the VNIs relevant here (the tracker's dict)."""
        self.interfaces = self.reconciler.table.by_key
        """NA key → the `Interface` made for it (the reconciler's table)."""
        # bound once: `sync` runs for every key the queue hands out (the relevance tracker's and the
        # reconciler's own collections, read here without a method call each)
        self._informers_of = self.relevance.informers_of
        self._create_failed = self.reconciler.create_failed
        self.local: Informer[NetworkAttachment] = Informer(
            api, NetworkAttachment, field_selector=f"spec.node={self.node},status.ipv4!=",
            indexers={INDEX_OWNER: lambda na: [translate.local_owner_key(na.status.address_vni, na.status.ipv4)]},
            name=f"{self.node}/local", streaming_list=True,
        )  # fmt: skip
        self.local.add_handlers(self.relevance.local_added, self._local_updated, self.relevance.local_deleted)
        local_reflector = self.local.reflector
        self.status.seen_revision = self.relevance.local_revision = lambda: local_reflector.resource_version
        self._tasks: list[asyncio.Task[None]] = []
        self.started = asyncio.Event()

    def _local_updated(self, old: NetworkAttachment, new: NetworkAttachment) -> None:
        k = key_of(new)
        ifc = self.interfaces.get(k)
        if ifc is not None and ifc.local is not None:
            ifc.post_delete_exec = new.spec.post_delete_exec  # the current command is the one to run
        if (
            old.metadata.uid != new.metadata.uid
            or old.status.ipv4 != new.status.ipv4
            or old.status.address_vni != new.status.address_vni
            or impl_differs(new, ifc, self.host_ip)
        ):
            self.queue.add(k)

    # --- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        self.local.start()
        await self.local.reflector.synced.wait()
        for na in self.local.lister.list():
            try:
                self.relevance.relevant(key_of(na), na)
            except Retry:
                pass  # a namespace mismatch: the NA's own sync sorts it out
        await asyncio.gather(*(vn.informer.reflector.synced.wait() for vn in self.vns.values()))
        await self.reconciler.adopt_or_delete(self.local.indexer)
        self.m.fabric_count.labels(self.m.node, self.fabric.name).inc()
        self.m.workers.labels(self.m.node).inc(self.settings.workers)
        for i in range(self.settings.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"agent-{self.node}-{i}"))
        self.status.sweep_wanted.set()  # what a previous run of this agent left behind
        self._tasks.append(asyncio.create_task(self.status.sweeper(), name=f"agent-{self.node}-sweeper"))
        self.started.set()

    async def stop(self) -> None:
        self.queue.shut_down()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.launcher.stop()
        await self.local.stop()
        await self.relevance.stop()

    async def _worker(self) -> None:
        await work(self.queue, self.sync, f"agent {self.node}", expected=(FabricError,))

    # --- sync --------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        """Steps 1-4 of the module docstring for NA `key`; Retry/RetrySoon and FabricError go to the worker."""
        ns, _, name = key.partition("/")
        local = self.local.lister.get(ns, name)
        await self.relevance.sync(key, local)
        held = self._informers_of.get(key, NONE_HELD)
        if len(held) > 1:
            return  # the NA is moving between watches: a later notification brings us back
        att: NetworkAttachment | None = None
        is_local = False
        if held == {LOCAL}:
            att, is_local = local, True
        elif held:
            vn = self.vns.get(next(iter(held)))
            att = vn.informer.lister.get(ns, name) if vn is not None else None
        status_errs = await self.reconciler.sync(key, att, is_local)
        if att is not None and is_local:
            await self.status.write(key, att, self.interfaces.get(key), status_errs)
        if key in self._create_failed:
            self._create_failed.discard(key)
            # the error is in the NA's status; the switch may recover (a restart, a timeout): try again, backing off
            raise Retry(f"creating the interface of {key} failed; will try again")
