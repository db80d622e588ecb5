"""Prometheus metrics for work queues, named as the original KOS names them (reference §8.1).

`kos_workqueue_*` with a `name` label (`sv`, `ipam`: the controller manager's queues; the
agent's `ca` queue has none). Several queues in one process share the metric families of
one registry.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kos.client.workqueue import WorkQueue

WQ_BUCKETS = tuple(1e-8 * 10**k for k in range(10))


class QueueMetricFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge("kos_workqueue_depth", "Current length of the queue.", ["name"], registry=registry)
        self.adds = Counter("kos_workqueue_adds_total", "Items added.", ["name"], registry=registry)
        self.queue_duration = Histogram(
            "kos_workqueue_queue_duration_seconds", "Time from add to get.", ["name"], buckets=WQ_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.work_duration = Histogram(
            "kos_workqueue_work_duration_seconds", "Processing time per item.", ["name"], buckets=WQ_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.unfinished = Gauge(
            "kos_workqueue_unfinished_work_seconds", "Seconds of work in progress not yet observed.", ["name"],
            registry=registry,
        )  # fmt: skip
        self.longest = Gauge(
            "kos_workqueue_longest_running_processor_seconds", "Age of the longest running item.", ["name"],
            registry=registry,
        )  # fmt: skip
        self.retries = Counter("kos_workqueue_retries_total", "Rate-limited re-adds.", ["name"], registry=registry)

    def for_queue(self, name: str) -> PrometheusQueueMetrics:
        return PrometheusQueueMetrics(self, name)

    def watch(self, queue: WorkQueue[Any]) -> None:
        """Report the in-progress gauges of `queue` when scraped."""
        self.unfinished.labels(queue.name).set_function(lambda: queue.processing() and queue.oldest_processing_age())
        self.longest.labels(queue.name).set_function(queue.oldest_processing_age)


class PrometheusQueueMetrics:
    def __init__(self, families: QueueMetricFamilies, name: str) -> None:
        self._depth = families.depth.labels(name)
        self._adds = families.adds.labels(name)
        self._queued = families.queue_duration.labels(name)
        self._worked = families.work_duration.labels(name)
        self._retries = families.retries.labels(name)

    def added(self) -> None:
        self._adds.inc()

    def depth(self, n: int) -> None:
        self._depth.set(n)

    def queued_for(self, seconds: float) -> None:
        self._queued.observe(seconds)

    def worked_for(self, seconds: float) -> None:
        self._worked.observe(seconds)

    def retried(self) -> None:
        self._retries.inc()
