"""Making the fabric agree with one NA: delete the interface it can no longer own, create the one it needs.

Given an NA's current version (from the local watch or a VNI's watch, or None
when it is gone or irrelevant), `sync` deletes an interface the NA can no
longer own (and launches its post-delete command), then creates the local or
remote interface it needs (and launches its post-create command). Every fabric
call is timed into `kos_agent_fabric_latency_seconds`; creations also observe
the latency since the client write that caused them. When (VNI, IP) is still
held by another NA's interface (an address moving), that NA is nudged to sync
and this one retries shortly. A failed local creation is reported as a host
error in the NA's status and retried with backoff (`create_failed`).

At start, `adopt_or_delete` links what the fabric already holds to its owners
and deletes the orphans, so a restart tears nothing live down.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kos.agent import translate
from kos.agent.interfaces import Interface, InterfaceTable, can_own, key_of
from kos.agent.launcher import ExecLauncher
from kos.agent.metrics import BoundMetrics
from kos.agent.relevance import INDEX_OWNER, RelevanceTracker
from kos.api.types import SECTION_IMPL, SECTION_SPEC, ExecReport, NetworkAttachment
from kos.client.controller import RetrySoon
from kos.client.indexer import Indexer
from kos.client.workqueue import WorkQueue
from kos.fabric.interface import DuplicateInterface, Fabric, FabricError, LocalNetIfc, RemoteNetIfc
from kos.util.clock import Clock
from kos.util.log import get_logger
from kos.util.timing import ERR, Timed

log = get_logger(__name__)

NUDGE_RETRY = 0.2
"""Seconds before retrying a creation whose (VNI, IP) another NA's interface still holds."""
ORPHAN_RETRY = 1.0
"""Seconds between attempts to delete an orphan interface at start."""


class InterfaceReconciler:
    """One node's interfaces: created, adopted and deleted through the fabric, recorded in `table`."""

    def __init__(
        self,
        fabric: Fabric,
        node: str,
        queue: WorkQueue[str],
        relevance: RelevanceTracker,
        launcher: ExecLauncher,
        metrics: BoundMetrics,
        clock: Clock,
    ) -> None:
        self.fabric = fabric
        self.node = node
        self.queue = queue
        self.relevance = relevance
        self.launcher = launcher
        self.m = metrics
        self.clock = clock
        self.table = InterfaceTable()
        self.create_failed: set[str] = set()
        """Local NAs whose interface could not be created in this sync (the agent retries them with backoff
        and removes them from here)."""

    async def sync(self, key: str, att: NetworkAttachment | None, is_local: bool) -> list[str]:
        """Make the fabric agree with `att` (None: `key` is gone or irrelevant); the NA's host errors.

        Raises FabricError (retried by the worker) and RetrySoon when another NA still holds the pair.
        """
        ifc = self.table.by_key.get(key)
        if ifc is not None and not can_own(ifc, att, is_local, self.node):
            await self._delete(key, ifc, att)
            ifc = None
        if att is None:
            return []
        if ifc is not None:
            if ifc.local is not None:  # re-check only whether the post-create command is allowed
                return self.launcher.errors(att)
            return []
        if is_local:
            return await self._create_local(key, att)
        await self._create_remote(key, att)
        return []

    # --- start-up ----------------------------------------------------------------------------

    async def adopt_or_delete(self, local_index: Indexer[NetworkAttachment]) -> None:
        """Link each interface the fabric holds to the one NA that owns it (by the watches' indexes), or
        delete it (an orphan); remote interfaces adopted are requeued for their NA's sync."""
        orphans: list[LocalNetIfc | RemoteNetIfc] = []
        for ifc in await self.fabric.list_local_ifcs():
            owners = local_index.by_index(INDEX_OWNER, translate.local_owner_key(ifc.vni, ifc.guest_ip))
            if len(owners) == 1 and key_of(owners[0]) not in self.table.by_key:
                owner = owners[0]
                self.table.record(key_of(owner), Interface(
                    local=ifc, post_delete_exec=owner.spec.post_delete_exec,
                    post_create_ran=owner.status.post_create_exec_report is not None,
                    report=owner.status.post_create_exec_report,
                ))  # fmt: skip
            else:
                orphans.append(ifc)
        for r in await self.fabric.list_remote_ifcs():
            vn = self.relevance.vns.get(r.vni)
            owner_key = translate.remote_owner_key(r.host_ip, r.guest_ip)
            owners = vn.informer.indexer.by_index(INDEX_OWNER, owner_key) if vn else []
            if len(owners) == 1 and key_of(owners[0]) not in self.table.by_key:
                k = key_of(owners[0])
                self.table.record(k, Interface(remote=r))
                self.queue.add(k)
            else:
                orphans.append(r)
        # all at once, so a fabric that batches (OVS: one bundle, one OVSDB transaction) can
        await asyncio.gather(*(self._delete_orphan(o) for o in orphans))
        self.m.local_attachments.labels(self.m.node).set(self.table.count(local=True))
        self.m.remote_attachments.labels(self.m.node).set(self.table.count(local=False))

    async def _delete_orphan(self, ifc: LocalNetIfc | RemoteNetIfc) -> None:
        while True:
            try:
                if isinstance(ifc, LocalNetIfc):
                    await self.fabric.delete_local_ifc(ifc)
                else:
                    await self.fabric.delete_remote_ifc(ifc)
                log.info("deleted orphan interface", node=self.node, interface=ifc)
                return
            except FabricError as e:
                log.warning("deleting orphan interface failed; retrying", node=self.node, interface=ifc, error=e)
                await self.clock.sleep(ORPHAN_RETRY)

    # --- delete and create -------------------------------------------------------------------

    async def _delete(self, key: str, ifc: Interface, att: NetworkAttachment | None) -> None:
        op = "DeleteLocalIfc" if ifc.local else "DeleteRemoteIfc"
        with Timed(self.m.fabric_latency, self.m.node, op):
            if ifc.local is not None:
                await self.fabric.delete_local_ifc(ifc.local)
            else:
                assert ifc.remote is not None
                await self.fabric.delete_remote_ifc(ifc.remote)
        self.table.forget(key)
        if ifc.local is not None:
            self.m.local_attachments.labels(self.m.node).dec()
            # post-delete runs only for an interface whose post-create ran, with the NA's current command if it
            # still exists, else the one it had (ARCHITECTURE §12.5)
            if ifc.post_create_ran:
                argv = att.spec.post_delete_exec if att is not None else ifc.post_delete_exec
                self.launcher.launch("postDelete", argv, ifc.local, None)
        else:
            self.m.remote_attachments.labels(self.m.node).dec()

    async def _create_local(self, key: str, att: NetworkAttachment) -> list[str]:
        ifc = translate.local_ifc(att)
        failed: FabricError | None = None
        with Timed(self.m.fabric_latency, self.m.node, "CreateLocalIfc") as t:
            try:
                await self.fabric.create_local_ifc(ifc)
            except DuplicateInterface as e:
                self._nudge_holder(ifc.vni, ifc.guest_ip, key)
                raise RetrySoon(str(e), NUDGE_RETRY) from e
            except FabricError as e:
                t.outcome, failed = ERR, e
        if failed is not None:
            log.warning("creating local interface failed", node=self.node, interface=ifc.name, key=key, error=failed)
            self.create_failed.add(key)
            return [str(failed)]
        rec = Interface(local=ifc, post_delete_exec=att.spec.post_delete_exec)
        self.table.record(key, rec)
        self.m.local_attachments.labels(self.m.node).inc()
        if not att.status.ifc_name:
            self._observe_since_client_write(self.m.local_ifc_latency, att)
        errs = self.launcher.errors(att)
        if att.spec.post_create_exec and not errs:
            rec.post_create_ran = True
            self.launcher.launch("postCreate", att.spec.post_create_exec, ifc, self._on_report(key, rec))
        return errs

    def _on_report(self, key: str, rec: Interface) -> Any:
        def reported(report: ExecReport) -> None:
            if self.table.by_key.get(key) is rec:
                rec.report = report
                self.queue.add(key)  # write the report into the NA's status

        return reported

    async def _create_remote(self, key: str, att: NetworkAttachment) -> None:
        ifc = translate.remote_ifc(att)
        with Timed(self.m.fabric_latency, self.m.node, "CreateRemoteIfc"):
            try:
                await self.fabric.create_remote_ifc(ifc)
            except DuplicateInterface as e:
                self._nudge_holder(ifc.vni, ifc.guest_ip, key)
                raise RetrySoon(str(e), NUDGE_RETRY) from e
        self.table.record(key, Interface(remote=ifc))
        self.m.remote_attachments.labels(self.m.node).inc()
        self._observe_remote(ifc.vni, att)

    def _observe_remote(self, vni: int, att: NetworkAttachment) -> None:
        vn = self.relevance.vns.get(vni)
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
        holder = self.table.holder(vni, ip)
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
