"""The controllers' Prometheus metrics, with the original KOS names, labels and buckets (reference §8.1)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from kos import __version__

B_RT = (-0.125, 0, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
B_CW = (-1, 0, 0.125, 0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
B_SV = (-1, 0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
B_LIST = (-1, 0, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def ok(failed: bool) -> str:
    return "err" if failed else "ok"


class SubnetValidatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        ns, sub = "kos", "subnet_validator"
        r = registry
        self.create_to_validated = Histogram(
            "subnet_create_to_validated_latency_seconds", "Subnet creation to the return of its first verdict update.",
            ["statusErr"], namespace=ns, subsystem=sub, buckets=B_SV, registry=r,
        )  # fmt: skip
        self.update_latency = Histogram(
            "subnet_update_latency_seconds", "Round trip of a subnet status update.", ["err", "statusErr"],
            namespace=ns, subsystem=sub, buckets=B_RT, registry=r,
        )  # fmt: skip
        for e in ("ok", "err"):
            for s in ("ok", "err"):
                self.update_latency.labels(e, s)
        self.live_list_latency = Histogram(
            "live_list_latency_seconds", "Round trip of the live list by VNI.", ["err"], namespace=ns, subsystem=sub,
            buckets=B_RT, registry=r,
        )  # fmt: skip
        self.live_list_size = Histogram(
            "number_of_subnets_returned_by_live_list", "Subnets returned by a live list.", namespace=ns,
            subsystem=sub, buckets=B_LIST, registry=r,
        )  # fmt: skip
        self.duplicate_work = Counter(
            "duplicate_work_count", "Subnets processed whose status was already up to date.", namespace=ns,
            subsystem=sub, registry=r,
        )  # fmt: skip
        self.stale_suppression = Counter(
            "stale_subnet_work_suppression_count", "Subnets skipped because the cached copy was stale.",
            namespace=ns, subsystem=sub, registry=r,
        )  # fmt: skip
        self.cache_mismatch = Counter(
            "subnet_live_vs_conflict_cache_count", "Rival registrations that failed.", ["mismatch_type"],
            namespace=ns, subsystem=sub, registry=r,
        )  # fmt: skip
        self.workers = Counter("worker_count", "Workers started.", namespace=ns, subsystem=sub, registry=r)
        self.version = Counter("version", "Version.", ["git_commit"], namespace=ns, subsystem=sub, registry=r)
        self.version.labels(__version__).inc()


class IPAMMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        ns, sub = "kos", "ipam"
        r = registry
        self.address_contention = Histogram(
            "address_contention", "Per pick attempt: 0 = got an address, 1 = the subnet was full.", namespace=ns,
            subsystem=sub, buckets=(0,), registry=r,
        )  # fmt: skip
        self.client_write_to_lock = Histogram(
            "last_client_write_to_lock_latency_seconds", "Last client write to the lock's creation.",
            ["last_client_wr", "contention"], namespace=ns, subsystem=sub, buckets=B_CW, registry=r,
        )  # fmt: skip
        self.lock_latency = Histogram(
            "ip_lock_latency_seconds", "Round trip of an IPLock create or delete.", ["op", "err"], namespace=ns,
            subsystem=sub, buckets=B_RT, registry=r,
        )  # fmt: skip
        self.lock_latency.labels("create", "ok")
        self.lock_latency.labels("delete", "ok")
        self.client_write_to_address = Histogram(
            "last_client_write_to_address_latency_seconds", "Last client write to the NA's address write.",
            ["last_client_wr", "contention"], namespace=ns, subsystem=sub, buckets=B_CW, registry=r,
        )  # fmt: skip
        self.update_latency = Histogram(
            "attachment_update_latency_seconds", "Round trip of an NA status update.", ["statusErr", "err"],
            namespace=ns, subsystem=sub, buckets=B_RT, registry=r,
        )  # fmt: skip
        self.update_latency.labels("ok", "ok")
        self.anticipation_used = Histogram(
            "anticipation_used", "0 = no anticipation used, 1 = used with clue, 2 = used without clue.",
            namespace=ns, subsystem=sub, buckets=(0, 1, 2), registry=r,
        )  # fmt: skip
        self.status_used = Histogram(
            "status_used", "1 if the live GET of the lock named by the status found one owned by the NA.",
            namespace=ns, subsystem=sub, buckets=(0, 1), registry=r,
        )  # fmt: skip
        self.workers = Counter("worker_count", "Workers started.", namespace=ns, subsystem=sub, registry=r)
        self.version = Counter("version", "Version.", ["git_commit"], namespace=ns, subsystem=sub, registry=r)
        self.version.labels(__version__).inc()
