"""The driver's Prometheus histograms and counters, with the original names and buckets (reference §8.1)."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram

from kos.driver.records import Record

B_CREATE = (-1, 0, 0.0625, 0.125, 0.25, 0.5, 1, 1.5, 2, 3, 4, 8, 16, 32)
B_ADDRESSED = (-1, 0, 0.125, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
B_READY = (-1, 0, 0.125, 0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512)
B_BROKEN = (-1, 0, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
B_READY_TESTED = (-1, 0, 0.125, 0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 16, 24, 32, 48, 64, 128, 256)
B_DELETE = (-1, 0, 0.125, 0.25, 0.5, 1, 1.5, 2, 3, 4, 8, 16, 32)


class DriverMetrics:
    """The histograms and counters of one run, labelled with its run ID."""

    def __init__(self, registry: CollectorRegistry, run_id: str) -> None:
        ns, sub, r = "kos", "driver", registry

        def h(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, ["runID"], namespace=ns, subsystem=sub, buckets=buckets, registry=r)

        self.create = h("attachment_create_latency_seconds", "Create call latency.", B_CREATE)
        self.create_to_addressed = h("attachment_create_to_addressed_latency_seconds",
                                     "Pre-create to the address notification.", B_ADDRESSED)  # fmt: skip
        self.create_to_addressed_easy = h("attachment_create_to_addressed_easy_latency_seconds",
                                          "Pre-create to the address notification, without contention.", B_ADDRESSED)  # fmt: skip
        self.create_to_ready = h("attachment_create_to_ready_latency_seconds",
                                 "Pre-create to the ready notification.", B_READY)  # fmt: skip
        self.create_to_ready_easy = h("attachment_create_to_ready_easy_latency_seconds",
                                      "Pre-create to the ready notification, without contention.", B_READY)  # fmt: skip
        self.create_to_broken = h("attachment_create_to_broken_latency_seconds", "Pre-create to broken.", B_BROKEN)
        self.create_to_half_tested = h("attachment_create_to_half_tested_latency_seconds",
                                       "Pre-create to a half test's report.", B_READY)  # fmt: skip
        self.create_to_tested = h("attachment_create_to_tested_latency_seconds",
                                  "Pre-create to a full test's report.", B_READY)  # fmt: skip
        self.ready_to_half_tested = h("attachment_ready_to_half_tested_latency_seconds",
                                      "Ready to a half test's report.", B_READY_TESTED)  # fmt: skip
        self.ready_to_tested = h("attachment_ready_to_tested_latency_seconds",
                                 "Ready to a full test's report.", B_READY_TESTED)  # fmt: skip
        self.delete = h("attachment_delete_latency_seconds", "Delete call latency.", B_DELETE)
        self.test_count = Counter("test_count", "Tests by exit status.", ["runID", "ES", "lgComplaints", "full"],
                                  namespace=ns, subsystem=sub, registry=r)  # fmt: skip
        self.successful_creates = Counter("successful_creates", "Creates that succeeded.", ["runID"], namespace=ns,
                                          subsystem=sub, registry=r)  # fmt: skip
        self.failed_creates = Counter("failed_creates", "Creates that failed.", ["runID"], namespace=ns,
                                      subsystem=sub, registry=r)  # fmt: skip
        self.successful_deletes = Counter("successful_deletes", "Deletes that succeeded.", ["runID"], namespace=ns,
                                          subsystem=sub, registry=r)  # fmt: skip
        self.failed_deletes = Counter("failed_deletes", "Deletes that failed for good.", ["runID"], namespace=ns,
                                      subsystem=sub, registry=r)  # fmt: skip
        self.run_id = run_id
        for outcome in (self.successful_creates, self.failed_creates, self.successful_deletes, self.failed_deletes):
            outcome.labels(run_id)  # exported at 0: a run without failures still says so

    def observe_closed(self, r: Record) -> None:
        """Put a closed NA's stage latencies (seconds from just before its create) into the histograms."""
        rid = self.run_id
        if not math.isnan(r.addressed):
            d = r.addressed - r.t_create
            self.create_to_addressed.labels(rid).observe(d)
            if not r.contention:
                self.create_to_addressed_easy.labels(rid).observe(d)
        if not math.isnan(r.ready):
            d = r.ready - r.t_create
            self.create_to_ready.labels(rid).observe(d)
            if not r.contention:
                self.create_to_ready_easy.labels(rid).observe(d)
        if not math.isnan(r.broken):
            self.create_to_broken.labels(rid).observe(r.broken - r.t_create)
        if not math.isnan(r.tested) and not math.isnan(r.ready):
            if r.full_test:
                self.create_to_tested.labels(rid).observe(r.tested - r.t_create)
                self.ready_to_tested.labels(rid).observe(r.tested - r.ready)
            else:
                self.create_to_half_tested.labels(rid).observe(r.tested - r.t_create)
                self.ready_to_half_tested.labels(rid).observe(r.tested - r.ready)
            self.test_count.labels(rid, str(r.test_exit), "-1", str(r.full_test).lower()).inc()
