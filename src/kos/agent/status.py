"""Writing what the node did into its local NAs' status, and clearing it when an NA loses its address.

For a local NA the agent owns the implementation fields of its status: MAC,
interface name, host IP, host errors and the post-create report (ARCHITECTURE
§12.4). `write` sends one update_status when they differ from what the NA
shows — none when they agree, so a sync that changed nothing costs no write.

When an NA loses its address it leaves the local watch (as it does when it is
deleted: the watch cannot tell which), yet its status may still show our
fields. Rather than a PATCH per departure (nearly all are deletions, so nearly
all would be 404s), the sweeper batches them: at most once per `SWEEP_DELAY`,
one list of this node's NAs without an address finds those still showing our
fields, and each is cleared with a resourceVersion precondition (so an NA
re-addressed meanwhile is left alone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from kos.agent.interfaces import Interface, key_of
from kos.agent.metrics import BoundMetrics
from kos.api.errors import Conflict, NotFound, StatusError, is_too_large_resource_version
from kos.api.types import (
    SECTION_IMPL,
    SECTION_SPEC,
    NetworkAttachment,
    NetworkAttachmentErrors,
    exec_reports_equivalent,
)
from kos.client.api import API
from kos.client.controller import RetrySoon
from kos.util.clock import Clock
from kos.util.log import get_logger
from kos.util.timing import Timed

log = get_logger(__name__)

SWEEP_DELAY = 1.0
"""Seconds a departure from the local watch waits for others before one sweep handles them all."""


class StatusWriter:
    """The status fields one node's agent owns on its local NAs: written after a sync, swept when stale."""

    def __init__(self, api: API, node: str, host_ip: str, metrics: BoundMetrics, clock: Clock) -> None:
        self.api = api
        self.node = node
        self.host_ip = host_ip
        self.m = metrics
        self.clock = clock
        self.sweep_wanted = asyncio.Event()
        """Set when a local NA left the local watch: it may have lost its address and still show what we wrote."""
        self.seen_revision: Callable[[], str] = lambda: ""
        """The revision of the newest departure the agent has seen (its local watch's); a sweep lists at least
        that new ("": a consistent list). Set by the agent once its local watch exists."""

    async def write(self, key: str, att: NetworkAttachment, ifc: Interface | None, status_errs: list[str]) -> None:
        """Make `att`'s status show `ifc` (None: no interface) and `status_errs`; no call when it already does.

        Raises RetrySoon when the NA changed meanwhile (409), StatusError for other failures; a 404 is ignored
        (the NA's deletion brings its own sync).
        """
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
        with Timed(self.m.status_latency, self.m.node, "err" if status_errs else "ok") as t:
            try:
                updated = await self.api.update_status(new)
            except NotFound:
                t.outcome = "nf"
                return
            except Conflict as e:
                raise RetrySoon(f"status of {key} changed meanwhile: {e.message}") from e
        if not st.host_ip:
            impl = updated.extended_metadata.write_time(SECTION_IMPL)
            spec = att.extended_metadata.write_time(SECTION_SPEC)
            if impl is not None and spec is not None:
                self.m.status_update_latency.labels(self.m.node, "na").observe((impl - spec).total_seconds())

    async def sweeper(self) -> None:
        """Run sweeps while `sweep_wanted` is set, at most one per `SWEEP_DELAY`; a failed sweep is retried."""
        while True:
            await self.sweep_wanted.wait()
            await self.clock.sleep(SWEEP_DELAY)
            self.sweep_wanted.clear()
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the apiserver may be away; try again later
                log.info("clearing stale status fields failed; retrying", node=self.node, error=e)
                self.sweep_wanted.set()

    async def sweep(self) -> None:
        """Clear our fields from this node's NAs that have no address (ARCHITECTURE §12.4); StatusError on a
        failed list.

        The list need only include the departures seen so far, so it asks for a view at least as new as
        the local watch's revision: the apiserver serves that from its watch cache, where a consistent list
        would first read the store's revision (an etcd `Range` per sweep)."""
        selector = f"spec.node={self.node},status.ipv4="
        try:
            nas, _ = await self.api.list(
                NetworkAttachment, field_selector=selector, resource_version=self.seen_revision()
            )
        except StatusError as e:
            if not is_too_large_resource_version(e):
                raise
            # our revision is from a store since replaced (a restart on memory://): read the current state
            nas, _ = await self.api.list(NetworkAttachment, field_selector=selector)
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
                await self.api.patch(
                    NetworkAttachment, na.metadata.namespace, na.metadata.name, patch, subresource="status"
                )
                log.info(
                    "cleared the implementation fields of an NA without an address", node=self.node, key=key_of(na)
                )
            except (NotFound, Conflict):
                pass  # deleted or changed since the list: a later sweep looks again if it still matters
