"""The agent's Prometheus metrics, with the original KOS names and buckets (reference §8.1), labelled by node.

The histograms and interface gauges are updated on every fabric call and remote
interface, from the agent's event loop only: they are `kos.util.loopmetrics`
types (no lock per update), exposed exactly as prometheus_client's would be.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter

from kos import __version__
from kos.util.loopmetrics import LoopGauge, LoopHistogram

B_CA = (-0.125, 0, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256)
B_FAB = (-0.125, 0, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16)


class AgentMetricFamilies:
    """One set of families per registry; every agent of a process (simnodes) uses it with its own `node` label."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ns, sub, r = "kos", "agent", registry
        self.local_ifc_latency = LoopHistogram(
            "last_client_write_to_local_ifc_latency_seconds", "Last client write to the local interface's creation.",
            ["node", "last_client_wr"], namespace=ns, subsystem=sub, buckets=B_CA, registry=r,
        )  # fmt: skip
        self.remote_ifc_latency = LoopHistogram(
            "last_client_write_to_remote_ifc_latency_seconds", "Last client write to the remote interface's creation.",
            ["node", "last_client_wr"], namespace=ns, subsystem=sub, buckets=B_CA, registry=r,
        )  # fmt: skip
        self.impl_to_remote = LoopHistogram(
            "attachment_impl_to_remote_ifc_latency_seconds", "NA status.impl write to the remote interface's creation.",
            ["node", "last_client_wr"], namespace=ns, subsystem=sub, buckets=B_CA, registry=r,
        )  # fmt: skip
        self.fabric_latency = LoopHistogram(
            "fabric_latency_seconds", "Fabric call duration.", ["node", "op", "err"], namespace=ns, subsystem=sub,
            buckets=B_FAB, registry=r,
        )  # fmt: skip
        self.status_update_latency = LoopHistogram(
            "last_client_write_to_status_update_latency_seconds", "Last client write to the first status.impl write.",
            ["node", "last_client_wr"], namespace=ns, subsystem=sub, buckets=B_CA, registry=r,
        )  # fmt: skip
        self.status_latency = LoopHistogram(
            "attachment_status_latency_seconds", "Round trip of an NA status update.", ["node", "statusErr", "err"],
            namespace=ns, subsystem=sub, buckets=B_CA, registry=r,
        )  # fmt: skip
        self.local_attachments = LoopGauge("local_attachments", "Local interfaces in the fabric.", ["node"],
                                           namespace=ns, subsystem=sub, registry=r)  # fmt: skip
        self.remote_attachments = LoopGauge("remote_attachments", "Remote interfaces in the fabric.", ["node"],
                                            namespace=ns, subsystem=sub, registry=r)  # fmt: skip
        self.exec_duration = LoopHistogram(
            "attachment_exec_duration_secs", "Post-create/post-delete command duration.",
            ["node", "what", "exitStatus", "lgComplaints"], namespace=ns, subsystem=sub, buckets=B_CA, registry=r,
        )  # fmt: skip
        self.exec_count = Counter(
            "attachment_exec_status_count", "Post-create/post-delete commands run.",
            ["node", "what", "exitStatus", "lgComplaints"], namespace=ns, subsystem=sub, registry=r,
        )  # fmt: skip
        self.fabric_count = Counter("fabric_count", "Fabric in use.", ["node", "fabric"], namespace=ns, subsystem=sub,
                                    registry=r)  # fmt: skip
        self.workers = Counter("worker_count", "Workers started.", ["node"], namespace=ns, subsystem=sub, registry=r)
        self.vni_watch_starts = Counter(
            "vni_watch_starts", "Per-VNI watches started (a VNI became relevant with no watch of it open).", ["node"],
            namespace=ns, subsystem=sub, registry=r,
        )  # fmt: skip
        self.vni_watch_stops = Counter(
            "vni_watch_stops", "Per-VNI watches stopped (the VNI's last local NA went).", ["node"],
            namespace=ns, subsystem=sub, registry=r,
        )  # fmt: skip
        self.vni_watch_initial_objects = Counter(
            "vni_watch_initial_objects", "Remote NAs the started per-VNI watches began with (their streaming lists).",
            ["node"], namespace=ns, subsystem=sub, registry=r,
        )  # fmt: skip
        self.version = Counter("version", "Version.", ["git_commit"], namespace=ns, subsystem=sub, registry=r)
        self.version.labels(__version__).inc()


class Children:
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


class BoundMetrics:
    """The metric families of one agent (children cached; `node`, its label value, is the first label of each)."""

    def __init__(self, families: AgentMetricFamilies, node: str) -> None:
        self.node = node
        f = families
        self.local_ifc_latency = Children(f.local_ifc_latency)
        self.remote_ifc_latency = Children(f.remote_ifc_latency)
        self.impl_to_remote = Children(f.impl_to_remote)
        self.fabric_latency = Children(f.fabric_latency)
        self.status_update_latency = Children(f.status_update_latency)
        self.status_latency = Children(f.status_latency)
        self.local_attachments = Children(f.local_attachments)
        self.remote_attachments = Children(f.remote_attachments)
        self.exec_duration = Children(f.exec_duration)
        self.exec_count = Children(f.exec_count)
        self.fabric_count = Children(f.fabric_count)
        self.workers = Children(f.workers)
        self.vni_watch_starts = Children(f.vni_watch_starts)
        self.vni_watch_stops = Children(f.vni_watch_stops)
        self.vni_watch_initial_objects = Children(f.vni_watch_initial_objects)
