"""The apiserver's Prometheus metrics, named as kube-apiserver names them where one exists.

Each server has its own registry, so several servers can run in one process (tests).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kos.apiserver.storagemetrics import storage_latency

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class APIServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "apiserver_request_total",
            "Requests by verb, resource, subresource and HTTP code.",
            ["verb", "resource", "subresource", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "apiserver_request_duration_seconds",
            "Request latency (for watches: until the response headers are sent).",
            ["verb", "resource", "subresource"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.watchers = Gauge("apiserver_registered_watchers", "Open watches.", ["resource"], registry=r)
        self.watch_events = Counter(
            "apiserver_watch_events_total", "Watch events sent to clients.", ["resource"], registry=r
        )
        self.watch_bytes = Counter(
            "apiserver_watch_events_sizes_bytes_total",
            "Bytes of watch events sent.",
            ["resource"],
            registry=r,
        )
        self.slow_watchers = Counter(
            "kos_apiserver_watchers_dropped_total",
            "Watches closed because the client could not keep up.",
            ["resource"],
            registry=r,
        )
        self.inflight = Gauge(
            "apiserver_current_inflight_requests", "Requests being served.", ["request_kind"], registry=r
        )
        self.dropped = Counter(
            "apiserver_dropped_requests_total",
            "Requests answered 429 because too many were in flight (kos.apiserver.inflight).",
            ["request_kind"],
            registry=r,
        )
        self.objects = Gauge("apiserver_storage_objects", "Objects in the watch cache.", ["resource"], registry=r)
        self.revision = Gauge("kos_apiserver_watch_cache_revision", "Revision applied by the watch cache.",
                              registry=r)  # fmt: skip
        self.storage_latency = storage_latency(r)
        self.gc_deleted = Counter(
            "kos_apiserver_gc_deleted_total", "Objects deleted by the garbage collector.", registry=r
        )

    def track(self, resource: str, objects: Callable[[], int]) -> None:
        self.objects.labels(resource).set_function(objects)
        self.slow_watchers.labels(resource)  # exported at 0 from the start, so an alert's increase() sees the first
