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
   clear those fields (ARCHITECTURE §12.4) — in a batched sweep, see `_sweeper`.
A restart lists what the fabric holds, links each interface to its owner and
deletes the orphans before any worker runs, so nothing live is torn down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from typing import Any

import msgspec

from kos.agent import execs, translate
from kos.agent.metrics import AgentMetricFamilies
from kos.api.errors import Conflict, NotFound, StatusError
from kos.api.types import (
    SECTION_IMPL,
    SECTION_SPEC,
    ExecReport,
    NetworkAttachment,
    NetworkAttachmentErrors,
    exec_reports_equivalent,
)
from kos.client.controller import Retry, RetrySoon, work
from kos.client.informer import Informer
from kos.client.rest import Client
from kos.client.workqueue import WorkQueue
from kos.fabric.interface import DuplicateInterface, Fabric, FabricError, LocalNetIfc, RemoteNetIfc
from kos.util.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)

SWEEP_DELAY = 1.0
"""Seconds a departure from the local watch waits for others before one sweep handles them all."""
LOCAL = 0
"""The pseudo-VNI of the local watch."""
INDEX_OWNER = "ifcOwnerData"


def key_of(na: NetworkAttachment) -> str:
    return f"{na.metadata.namespace}/{na.metadata.name}"


@dataclasses.dataclass(slots=True)
class Interface:
    """An interface this agent created or adopted, and what it must remember about it."""

    local: LocalNetIfc | None = None
    remote: RemoteNetIfc | None = None
    post_delete_exec: tuple[str, ...] = ()
    post_create_ran: bool = False
    report: ExecReport | None = None

    @property
    def vni(self) -> int:
        return self.local.vni if self.local else self.remote.vni  # type: ignore[union-attr]

    @property
    def ip(self) -> str:
        return self.local.guest_ip if self.local else self.remote.guest_ip  # type: ignore[union-attr]


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


@dataclasses.dataclass(frozen=True, slots=True)
class AgentSettings:
    node: str
    host_ip: str
    allowed_programs: frozenset[str] = frozenset()
    workers: int = 2


class ConnectionAgent:
    def __init__(
        self,
        client: Client,
        fabric: Fabric,
        settings: AgentSettings,
        metrics: AgentMetricFamilies,
        *,
        clock: Clock = REAL_CLOCK,
        metrics_node_label: str | None = None,
    ) -> None:
        self.client = client
        self.fabric = fabric
        self.settings = settings
        self.node = settings.node
        self.host_ip = settings.host_ip
        self.clock = clock
        label = metrics_node_label if metrics_node_label is not None else settings.node
        self.m = _BoundMetrics(metrics, label)
        self.queue: WorkQueue[str] = WorkQueue("ca", clock=clock)
        self.local: Informer[NetworkAttachment] = Informer(
            client, NetworkAttachment, field_selector=f"spec.node={self.node},status.ipv4!=",
            indexers={INDEX_OWNER: lambda na: [translate.local_owner_key(na.status.address_vni, na.status.ipv4)]},
            name=f"{self.node}/local", streaming_list=True,
        )  # fmt: skip
        self.local.add_handlers(self._local_added, self._local_updated, self._local_deleted)
        self.informers_of: dict[str, set[int]] = {}
        """NA key → the watches (VNIs, LOCAL for the local one) whose caches hold it."""
        self.vns: dict[int, VirtualNetwork] = {}
        self.local_vni: dict[str, int] = {}
        """Local NA key → the VNI it makes relevant."""
        self.interfaces: dict[str, Interface] = {}
        self.by_pair: dict[tuple[int, str], str] = {}
        """(VNI, IP) → the NA key whose interface holds it."""
        self._create_failed: set[str] = set()
        """Local NAs whose interface could not be created in this sync (retried with backoff)."""
        self._sweep_wanted = asyncio.Event()
        """Set when a local NA left the local watch: it may have lost its address and still show what we wrote."""
        self._tasks: list[asyncio.Task[None]] = []
        self._exec_tasks: set[asyncio.Task[None]] = set()
        self.started = asyncio.Event()

    # --- event handlers: record which watch holds what, and enqueue --------------------------

    def _local_added(self, na: NetworkAttachment) -> None:
        k = key_of(na)
        self.informers_of.setdefault(k, set()).add(LOCAL)
        self.queue.add(k)

    def _local_updated(self, old: NetworkAttachment, new: NetworkAttachment) -> None:
        k = key_of(new)
        ifc = self.interfaces.get(k)
        if ifc is not None and ifc.local is not None:
            ifc.post_delete_exec = new.spec.post_delete_exec  # the current command is the one to run
        if (
            old.metadata.uid != new.metadata.uid
            or old.status.ipv4 != new.status.ipv4
            or old.status.address_vni != new.status.address_vni
            or _impl_differs(new, ifc, self.host_ip)
        ):
            self.queue.add(k)

    def _local_deleted(self, na: NetworkAttachment) -> None:
        k = key_of(na)
        held = self.informers_of.get(k)
        if held is not None:
            held.discard(LOCAL)
            if not held:
                del self.informers_of[k]
        self._sweep_wanted.set()
        self.queue.add(k)

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

    # --- start-up and reconciliation ---------------------------------------------------------

    async def start(self) -> None:
        self.local.start()
        await self.local.reflector.synced.wait()
        for na in self.local.lister.list():
            try:
                self._relevant(key_of(na), na)
            except Retry:
                pass  # a namespace mismatch: the NA's own sync sorts it out
        await asyncio.gather(*(vn.informer.reflector.synced.wait() for vn in self.vns.values()))
        await self._adopt_or_delete()
        self.m.fabric_count.labels(self.m.node, self.fabric.name).inc()
        self.m.workers.labels(self.m.node).inc(self.settings.workers)
        for i in range(self.settings.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"agent-{self.node}-{i}"))
        self._sweep_wanted.set()  # what a previous run of this agent left behind
        self._tasks.append(asyncio.create_task(self._sweeper(), name=f"agent-{self.node}-sweeper"))
        self.started.set()

    async def _adopt_or_delete(self) -> None:
        locals_ = await self.fabric.list_local_ifcs()
        remotes = await self.fabric.list_remote_ifcs()
        orphans: list[LocalNetIfc | RemoteNetIfc] = []
        for ifc in locals_:
            owners = self.local.indexer.by_index(INDEX_OWNER, translate.local_owner_key(ifc.vni, ifc.guest_ip))
            if len(owners) == 1 and key_of(owners[0]) not in self.interfaces:
                owner = owners[0]
                self._record(key_of(owner), Interface(
                    local=ifc, post_delete_exec=owner.spec.post_delete_exec,
                    post_create_ran=owner.status.post_create_exec_report is not None,
                    report=owner.status.post_create_exec_report,
                ))  # fmt: skip
            else:
                orphans.append(ifc)
        for r in remotes:
            vn = self.vns.get(r.vni)
            owners = (
                vn.informer.indexer.by_index(INDEX_OWNER, translate.remote_owner_key(r.host_ip, r.guest_ip))
                if vn
                else []
            )
            if len(owners) == 1 and key_of(owners[0]) not in self.interfaces:
                k = key_of(owners[0])
                self._record(k, Interface(remote=r))
                self.queue.add(k)
            else:
                orphans.append(r)
        # all at once, so a fabric that batches (OVS: one bundle, one OVSDB transaction) can
        await asyncio.gather(*(self._delete_orphan(o) for o in orphans))
        self.m.local_attachments.labels(self.m.node).set(sum(1 for i in self.interfaces.values() if i.local))
        self.m.remote_attachments.labels(self.m.node).set(sum(1 for i in self.interfaces.values() if i.remote))

    async def _delete_orphan(self, ifc: LocalNetIfc | RemoteNetIfc) -> None:
        while True:
            try:
                if isinstance(ifc, LocalNetIfc):
                    await self.fabric.delete_local_ifc(ifc)
                else:
                    await self.fabric.delete_remote_ifc(ifc)
                log.info("node %s: deleted orphan interface %s", self.node, ifc)
                return
            except FabricError as e:
                log.warning("node %s: deleting orphan %s failed (%s); retrying", self.node, ifc, e)
                await self.clock.sleep(1.0)

    async def stop(self) -> None:
        self.queue.shut_down()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for t in list(self._exec_tasks):
            t.cancel()
        await self.local.stop()
        for vn in list(self.vns.values()):
            await vn.informer.stop()

    async def _worker(self) -> None:
        await work(self.queue, self.sync, f"agent {self.node}", expected=(FabricError,))

    # --- sync --------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        local = self.local.lister.get(ns, name)
        await self._sync_vn(key, local)
        held = self.informers_of.get(key, set())
        if len(held) > 1:
            return  # the NA is moving between watches: a later notification brings us back
        att: NetworkAttachment | None = None
        is_local = False
        if held == {LOCAL}:
            att, is_local = local, True
        elif held:
            vn = self.vns.get(next(iter(held)))
            att = vn.informer.lister.get(ns, name) if vn is not None else None
        status_errs = await self._sync_interface(key, att, is_local)
        if att is not None and is_local:
            await self._write_status(key, att, status_errs)
        if key in self._create_failed:
            # the error is in the NA's status; the switch may recover (a restart, a timeout): try again, backing off
            self._create_failed.discard(key)
            raise Retry(f"creating the interface of {key} failed; will try again")

    def _relevant(self, key: str, na: NetworkAttachment) -> None:
        vni = na.status.address_vni
        vn = self.vns.get(vni)
        if vn is None:
            informer: Informer[NetworkAttachment] = Informer(
                self.client, NetworkAttachment, namespace=na.metadata.namespace,
                field_selector=f"spec.node!={self.node},status.addressVNI={vni},status.ipv4!=,status.hostIP!=",
                indexers={INDEX_OWNER: lambda o: [translate.remote_owner_key(o.status.host_ip, o.status.ipv4)]},
                name=f"{self.node}/vni-{vni}", streaming_list=True,
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

    async def _sync_vn(self, key: str, local: NetworkAttachment | None) -> None:
        vni = self.local_vni.get(key)
        if vni is not None and (local is None or local.status.address_vni != vni):
            del self.local_vni[key]
            vn = self.vns.get(vni)
            if vn is not None:
                vn.locals.discard(key)
                if not vn.locals:  # the VN is no longer relevant here: stop watching it, drop its remotes
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
        if local is not None and key not in self.local_vni:
            self._relevant(key, local)

    async def _sync_interface(self, key: str, att: NetworkAttachment | None, is_local: bool) -> list[str]:
        ifc = self.interfaces.get(key)
        if ifc is not None and not _can_own(ifc, att, is_local, self.node):
            await self._delete(key, ifc, att)
            ifc = None
        if att is None:
            return []
        if ifc is not None:
            if ifc.local is not None:  # re-check only whether the post-create command is allowed
                return self._exec_errors(att)
            return []
        if is_local:
            return await self._create_local(key, att)
        await self._create_remote(key, att)
        return []

    def _exec_errors(self, att: NetworkAttachment) -> list[str]:
        argv = att.spec.post_create_exec
        if argv and argv[0] not in self.settings.allowed_programs:
            return [execs.not_allowed("postCreate", argv)]
        return []

    def _record(self, key: str, ifc: Interface) -> None:
        self.interfaces[key] = ifc
        self.by_pair[(ifc.vni, ifc.ip)] = key

    def _forget(self, key: str) -> Interface | None:
        ifc = self.interfaces.pop(key, None)
        if ifc is not None and self.by_pair.get((ifc.vni, ifc.ip)) == key:
            del self.by_pair[(ifc.vni, ifc.ip)]
        return ifc

    async def _delete(self, key: str, ifc: Interface, att: NetworkAttachment | None) -> None:
        op = "DeleteLocalIfc" if ifc.local else "DeleteRemoteIfc"
        t0 = time.perf_counter()
        try:
            if ifc.local is not None:
                await self.fabric.delete_local_ifc(ifc.local)
            else:
                assert ifc.remote is not None
                await self.fabric.delete_remote_ifc(ifc.remote)
        except FabricError:
            self.m.fabric_latency.labels(self.m.node, op, "err").observe(time.perf_counter() - t0)
            raise
        self.m.fabric_latency.labels(self.m.node, op, "ok").observe(time.perf_counter() - t0)
        self._forget(key)
        if ifc.local is not None:
            self.m.local_attachments.labels(self.m.node).dec()
            # post-delete runs only for an interface whose post-create ran, with the NA's current command if it
            # still exists, else the one it had (ARCHITECTURE §12.5)
            if ifc.post_create_ran:
                argv = att.spec.post_delete_exec if att is not None else ifc.post_delete_exec
                self._launch("postDelete", argv, ifc.local, None)
        else:
            self.m.remote_attachments.labels(self.m.node).dec()

    async def _create_local(self, key: str, att: NetworkAttachment) -> list[str]:
        ifc = translate.local_ifc(att)
        t0 = time.perf_counter()
        try:
            await self.fabric.create_local_ifc(ifc)
        except DuplicateInterface as e:
            self._nudge_holder(ifc.vni, ifc.guest_ip, key)
            self.m.fabric_latency.labels(self.m.node, "CreateLocalIfc", "err").observe(time.perf_counter() - t0)
            raise RetrySoon(str(e), 0.2) from e
        except FabricError as e:
            self.m.fabric_latency.labels(self.m.node, "CreateLocalIfc", "err").observe(time.perf_counter() - t0)
            log.warning("node %s: creating %s for %s failed: %s", self.node, ifc.name, key, e)
            self._create_failed.add(key)
            return [str(e)]
        self.m.fabric_latency.labels(self.m.node, "CreateLocalIfc", "ok").observe(time.perf_counter() - t0)
        rec = Interface(local=ifc, post_delete_exec=att.spec.post_delete_exec)
        self._record(key, rec)
        self.m.local_attachments.labels(self.m.node).inc()
        if not att.status.ifc_name:
            self._observe_since_client_write(self.m.local_ifc_latency, att)
        errs = self._exec_errors(att)
        if att.spec.post_create_exec and not errs:
            rec.post_create_ran = True
            self._launch("postCreate", att.spec.post_create_exec, ifc, (key, rec))
        return errs

    async def _create_remote(self, key: str, att: NetworkAttachment) -> None:
        ifc = translate.remote_ifc(att)
        t0 = time.perf_counter()
        try:
            await self.fabric.create_remote_ifc(ifc)
        except DuplicateInterface as e:
            self._nudge_holder(ifc.vni, ifc.guest_ip, key)
            self.m.fabric_latency.labels(self.m.node, "CreateRemoteIfc", "err").observe(time.perf_counter() - t0)
            raise RetrySoon(str(e), 0.2) from e
        except FabricError:
            self.m.fabric_latency.labels(self.m.node, "CreateRemoteIfc", "err").observe(time.perf_counter() - t0)
            raise
        self.m.fabric_latency.labels(self.m.node, "CreateRemoteIfc", "ok").observe(time.perf_counter() - t0)
        self._record(key, Interface(remote=ifc))
        self.m.remote_attachments.labels(self.m.node).inc()
        vn = self.vns.get(ifc.vni)
        impl = att.extended_metadata.write_time(SECTION_IMPL)
        now = self.clock.now()
        if vn is not None and impl is not None and vn.relevant_since > impl:
            # the VNI became relevant here after this NA was implemented: the wait is the relevance's, not the NA's
            self.m.remote_ifc_latency.labels(self.m.node, "1st_local_na").observe(
                (now - vn.relevant_since).total_seconds()
            )
            return
        self._observe_since_client_write(self.m.remote_ifc_latency, att)
        if impl is not None:
            self.m.impl_to_remote.labels(self.m.node, "na").observe((now - impl).total_seconds())

    def _nudge_holder(self, vni: int, ip: str, key: str) -> None:
        """Another NA's interface still holds (VNI, IP): sync it now so it lets go if it should."""
        holder = self.by_pair.get((vni, ip))
        if holder is not None and holder != key:
            self.queue.add(holder)

    def _observe_since_client_write(self, hist: Any, att: NetworkAttachment) -> None:
        t = att.extended_metadata.write_time(SECTION_SPEC)
        label = "na"
        sub = att.status.subnet_creation_time
        if sub is not None and (t is None or sub > t):
            t, label = sub, "subnet"
        if t is not None:
            hist.labels(self.m.node, label).observe((self.clock.now() - t).total_seconds())

    # --- commands ----------------------------------------------------------------------------

    def _launch(self, what: str, argv: tuple[str, ...], ifc: LocalNetIfc, target: tuple[str, Interface] | None) -> None:
        if not argv:
            return
        if argv[0] not in self.settings.allowed_programs:
            log.warning("node %s: %s", self.node, execs.not_allowed(what, argv))
            return
        cmd = execs.expand(argv, ifname=ifc.name, ipv4=ifc.guest_ip, mac=ifc.guest_mac)
        task = asyncio.create_task(self._run_exec(what, cmd, target))
        self._exec_tasks.add(task)
        task.add_done_callback(self._exec_tasks.discard)

    async def _run_exec(self, what: str, cmd: list[str], target: tuple[str, Interface] | None) -> None:
        report, seconds = await execs.run(cmd)
        lg = str(execs.lg_complaints(report.std_out, report.std_err))
        labels = (self.m.node, what, str(report.exit_status), lg)
        self.m.exec_duration.labels(*labels).observe(seconds)
        self.m.exec_count.labels(*labels).inc()
        log.info("node %s: %s %s exited %d", self.node, what, cmd, report.exit_status)
        if target is not None:
            key, rec = target
            if self.interfaces.get(key) is rec:
                rec.report = report
                self.queue.add(key)  # write the report into the NA's status

    # --- status ------------------------------------------------------------------------------

    async def _write_status(self, key: str, att: NetworkAttachment, status_errs: list[str]) -> None:
        ifc = self.interfaces.get(key)
        st = att.status
        if ifc is not None and ifc.local is not None:
            mac, name, report = ifc.local.guest_mac, ifc.local.name, ifc.report
        else:
            mac, name, report = "", "", None
        same = (st.mac_address, st.ifc_name, st.host_ip, list(st.errors.host)) == (mac, name, self.host_ip, status_errs)
        if same and exec_reports_equivalent(st.post_create_exec_report, report):
            return
        new = msgspec.structs.replace(att, status=msgspec.structs.replace(
            st, mac_address=mac, ifc_name=name, host_ip=self.host_ip, post_create_exec_report=report,
            errors=NetworkAttachmentErrors(ipam=st.errors.ipam, host=tuple(status_errs)),
        ))  # fmt: skip
        t0 = time.perf_counter()
        err_label = "err" if status_errs else "ok"
        try:
            updated = await self.client.update_status(new)
        except NotFound:
            self.m.status_latency.labels(self.m.node, err_label, "nf").observe(time.perf_counter() - t0)
            return
        except Conflict as e:
            self.m.status_latency.labels(self.m.node, err_label, "err").observe(time.perf_counter() - t0)
            raise RetrySoon(f"status of {key} changed meanwhile: {e.message}") from e
        except StatusError:
            self.m.status_latency.labels(self.m.node, err_label, "err").observe(time.perf_counter() - t0)
            raise
        self.m.status_latency.labels(self.m.node, err_label, "ok").observe(time.perf_counter() - t0)
        if not st.host_ip:
            impl = updated.extended_metadata.write_time(SECTION_IMPL)
            spec = att.extended_metadata.write_time(SECTION_SPEC)
            if impl is not None and spec is not None:
                self.m.status_update_latency.labels(self.m.node, "na").observe((impl - spec).total_seconds())

    async def _sweeper(self) -> None:
        """Clear the status fields this agent wrote on local NAs that lost their address (ARCHITECTURE §12.4).

        A local NA leaves the local watch when it is deleted or when IPAM takes its address away; the
        watch cannot tell which. Rather than a PATCH per departure (nearly all are deletions, so nearly all
        would be 404s), departures are batched: at most once per `SWEEP_DELAY` (1 s), one list of this node's
        NAs without an address finds those still showing our fields, and each is cleared with a
        resourceVersion precondition (so a NA re-addressed meanwhile is left alone).
        """
        while True:
            await self._sweep_wanted.wait()
            await self.clock.sleep(SWEEP_DELAY)
            self._sweep_wanted.clear()
            try:
                await self._sweep()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the apiserver may be away; try again later
                log.info("agent %s: clearing stale status fields failed: %s; retrying", self.node, e)
                self._sweep_wanted.set()

    async def _sweep(self) -> None:
        nas, _ = await self.client.list(NetworkAttachment, field_selector=f"spec.node={self.node},status.ipv4=")
        for na in nas:
            st = na.status
            if not (st.mac_address or st.ifc_name or st.host_ip or st.errors.host or st.post_create_exec_report):
                continue
            patch = {
                "metadata": {"resourceVersion": na.metadata.resource_version},
                "status": {"macAddress": None, "ifcName": None, "hostIP": None, "postCreateExecReport": None,
                           "errors": {"host": None}},
            }  # fmt: skip
            try:
                await self.client.patch(
                    NetworkAttachment, na.metadata.namespace, na.metadata.name, patch, subresource="status"
                )
                log.info("agent %s: cleared the implementation fields of %s, which lost its address", self.node,
                         key_of(na))  # fmt: skip
            except (NotFound, Conflict):
                pass  # deleted or changed since the list: a later sweep looks again if it still matters


def _can_own(ifc: Interface, att: NetworkAttachment | None, is_local: bool, node: str) -> bool:
    if att is None:
        return False
    st = att.status
    if ifc.local is not None:
        return is_local and att.spec.node == node and ifc.local.vni == st.address_vni and ifc.local.guest_ip == st.ipv4
    assert ifc.remote is not None
    r = ifc.remote
    return not is_local and r.vni == st.address_vni and r.guest_ip == st.ipv4 and r.host_ip == st.host_ip


def _impl_differs(na: NetworkAttachment, ifc: Interface | None, host_ip: str) -> bool:
    """Whether the status of a local NA no longer shows what we implemented (someone else wrote over it)."""
    if ifc is None or ifc.local is None:
        return False
    st = na.status
    return st.ifc_name != ifc.local.name or st.mac_address != ifc.local.guest_mac or st.host_ip != host_ip


class _Children:
    """A metric family whose labelled children are looked up once (prometheus_client's `labels` is not cheap)."""

    __slots__ = ("_children", "_family")

    def __init__(self, family: Any) -> None:
        self._family = family
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        c = self._children.get(values)
        if c is None:
            c = self._children[values] = self._family.labels(*values)
        return c


class _BoundMetrics:
    """The metric families of this agent (children cached; the node label is the first label of each)."""

    def __init__(self, families: AgentMetricFamilies, node: str) -> None:
        self.node = node
        f = families
        self.local_ifc_latency = _Children(f.local_ifc_latency)
        self.remote_ifc_latency = _Children(f.remote_ifc_latency)
        self.impl_to_remote = _Children(f.impl_to_remote)
        self.fabric_latency = _Children(f.fabric_latency)
        self.status_update_latency = _Children(f.status_update_latency)
        self.status_latency = _Children(f.status_latency)
        self.local_attachments = _Children(f.local_attachments)
        self.remote_attachments = _Children(f.remote_attachments)
        self.exec_duration = _Children(f.exec_duration)
        self.exec_count = _Children(f.exec_count)
        self.fabric_count = _Children(f.fabric_count)
        self.workers = _Children(f.workers)
        self.vni_watch_starts = _Children(f.vni_watch_starts)
        self.vni_watch_stops = _Children(f.vni_watch_stops)
        self.vni_watch_initial_objects = _Children(f.vni_watch_initial_objects)
