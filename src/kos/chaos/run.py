"""One chaos run: a workload, every fault in turn, then the history checked and the figures reported.

The order of a run (`kos chaos`, docs/reliability.md):

1. find the cluster (cluster.json; `kos up --ha`), note etcd's revision, open the history file;
2. start the watch recorders (kos.chaos.streams: all NAs, the NAs of one namespace, all Subnets) and the
   readiness follower, create the run's Subnets, start the workload (kos.chaos.workload); warm up;
3. inject each fault (kos.chaos.faults) in the seeded order, waiting after each until the cluster has
   recovered — every apiserver ready, etcd whole again with one leader, a write acknowledged after the
   heal — then a quiet spell so the faults spread over `duration`;
4. stop the workload and the recorders;
5. judge (kos.chaos.judge): wait (bounded) until `kos verify` passes and every NA is ready, read the store's
   own history from etcd (kos.chaos.storehistory; the run's start revision was read before its first call)
   and check the records against it (kos.chaos.checker); count every fault not recovered as a violation;
   print the report (kos.chaos.report).

`duration` bounds steps 2–3: the faults are spaced to fit it, and a duration too short for the faults asked
is refused before anything is done (`plan`). Steps 4–5 take at most READY_TIMEOUT plus the time to read
etcd's history and run the checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from kos.api.types import NetworkAttachment, Subnet
from kos.chaos import faults, report
from kos.chaos.cluster import ClusterError, RunningCluster
from kos.chaos.faults import QUORUM_SECONDS, STOP_SECONDS
from kos.chaos.history import Call, History
from kos.chaos.judge import judge
from kos.chaos.storehistory import store_revision
from kos.chaos.streams import record_stream
from kos.chaos.workload import Workload, WorkloadSettings
from kos.client.config import ClientConfig
from kos.util.calibration import calibration_seconds
from kos.util.clock import REAL_CLOCK, Clock

__all__ = ["ChaosSettings", "PlanError", "estimate", "plan", "run"]

WARMUP = 5.0
"""Seconds the workload runs before the first fault."""
RECOVERY_TIMEOUT = 90.0
"""Seconds a fault has, after its heal, to be recovered from before the run calls it a violation and moves on."""
READY_TIMEOUT = 90.0
"""Seconds, after the workload stops, for `kos verify` to pass and every NA to be ready."""
SETTLE = 5.0
"""Seconds the estimate allows each fault for detection, restart and recovery beyond its own length."""
POLL = 0.2


@dataclasses.dataclass(frozen=True, slots=True)
class ChaosSettings:
    """Everything one run needs (kos.cli.chaos checks the flags into it)."""

    state_dir: Path
    seed: int
    duration: float
    faults: tuple[str, ...]
    history: Path
    rate: float = 10.0
    stop_seconds: float = STOP_SECONDS
    quorum_seconds: float = QUORUM_SECONDS


class PlanError(ValueError):
    """The run cannot be planned: the duration is too short for the faults asked."""


def estimate(name: str, s: ChaosSettings) -> float:
    """Seconds fault `name` is expected to take from injection to recovery (its own length + SETTLE)."""
    own = {"apiserver-stop": s.stop_seconds, "quorum-loss": s.quorum_seconds}.get(name, 0.0)
    return own + SETTLE


def plan(s: ChaosSettings, rng: random.Random) -> tuple[list[str], list[float]]:
    """The faults in injection order (seeded) and when to inject each (seconds after the workload starts):
    after the warm-up, each fault gets a slot of `duration` in proportion to its estimate, so the faults
    spread over the whole run with quiet time after each. A fault that takes longer than its slot delays the
    next one (which then starts at once). Raises PlanError if `duration` is shorter than the warm-up and the
    faults' estimates."""
    order = faults.order(s.faults, rng)
    need = WARMUP + sum(estimate(f, s) for f in order)
    if s.duration < need:
        raise PlanError(f"{s.duration:g}s is too short for {len(order)} fault(s): they need at least "
                        f"{need:.0f}s ({', '.join(f'{f} ~{estimate(f, s):.0f}s' for f in order)}, "
                        f"warm-up {WARMUP:.0f}s)")  # fmt: skip
    scale = (s.duration - WARMUP) / max(need - WARMUP, 1e-9)
    starts, at = [], WARMUP
    for f in order:
        starts.append(at)
        at += estimate(f, s) * scale
    return order, starts


def _last_ack(records: Sequence[object]) -> float:
    for r in reversed(records):
        if isinstance(r, Call) and r.outcome == "ok" and r.op in report.WRITE_OPS:
            return r.end
    return 0.0


async def _run_tag(cluster: RunningCluster, seed: int) -> tuple[str, int]:
    """A name prefix unique to this run (`c<seed>r<n>`, n one more than the earlier runs of this seed on this
    cluster: a repeat of a seed makes the same choices under new names) and its first VNI."""
    async with cluster.client(timeout=10.0) as client:
        items, _ = await client.list(Subnet)
    prefix = f"c{seed}r"
    runs = [int(n[len(prefix):].split("-")[0]) for n in (o.metadata.name for o in items)
            if n.startswith(prefix) and n[len(prefix):].split("-")[0].isdigit()]  # fmt: skip
    n = max(runs, default=0) + 1
    return f"{prefix}{n}", 100_000 + (seed * 7919 + n * 64) % 1_900_000


async def run(s: ChaosSettings, *, out: TextIO = sys.stdout, clock: Clock = REAL_CLOCK) -> int:
    """Run the chaos test; 0 if no violation, 1 on any. Raises ClusterError (no usable cluster) and PlanError
    (a duration too short) before doing anything to the cluster."""
    cluster = RunningCluster(s.state_dir)
    cluster.check_ha()
    rng = random.Random(s.seed)
    order, starts = plan(s, rng)
    nodes = cluster.nodes()
    tag, vni_base = await _run_tag(cluster, s.seed)
    start = await store_revision(cluster.storage_url)
    s.history.parent.mkdir(parents=True, exist_ok=True)
    s.history.unlink(missing_ok=True)
    cal = await asyncio.to_thread(calibration_seconds)  # before the run: its figures depend on the machine
    print(f"kos chaos: calibration {cal:.2f} s (10M-iteration Python loop, median of 5; docs/performance.md)",
          file=out, flush=True)  # fmt: skip
    print(f"kos chaos: run {tag}, seed {s.seed}, faults in order: {', '.join(order)}; history {s.history}",
          file=out, flush=True)  # fmt: skip
    violations: list[str] = []
    ready_after: dict[float, float] = {}
    with History(s.history, clock=clock) as history:
        async with cluster.client(timeout=10.0, connections=32) as client, \
                cluster.client(timeout=30.0, connections=8) as watch_client:  # fmt: skip
            work = Workload(client, history, random.Random(rng.random()), nodes, tag, vni_base,
                            WorkloadSettings(rate=s.rate), clock)  # fmt: skip
            stop_streams, stop_work = asyncio.Event(), asyncio.Event()
            streams = [
                asyncio.create_task(record_stream(watch_client, history, NetworkAttachment, stop=stop_streams)),
                asyncio.create_task(
                    record_stream(
                        watch_client, history, NetworkAttachment, namespace=work.namespaces[0], stop=stop_streams
                    )
                ),
                asyncio.create_task(record_stream(watch_client, history, Subnet, stop=stop_streams)),
                asyncio.create_task(work.follow_readiness(stop_streams)),
            ]
            workload: asyncio.Task[None] | None = None
            try:
                try:
                    await work.setup()  # with the streams running: the Subnets' creation is checked too
                except TimeoutError as e:
                    violations.append(f"setup: {e}: the cluster takes no write")
                    order, starts = [], []
                workload = asyncio.create_task(work.run(stop_work))
                t0 = clock.monotonic()
                ctx = faults.FaultContext(cluster, history, client, clock, random.Random(rng.random()),
                                          s.stop_seconds, s.quorum_seconds)  # fmt: skip
                for name, at in zip(order, starts, strict=True):
                    await clock.sleep(max(0.0, t0 + at - clock.monotonic()))
                    print(f"kos chaos: {name} ...", file=out, flush=True)
                    try:
                        fault = await faults.inject(name, ctx)
                    except (faults.FaultError, ClusterError, ProcessLookupError) as e:
                        violations.append(f"{name}: {e}")
                        continue
                    recovered = await _recovered(cluster, history, fault.healed, clock)
                    if recovered is None:
                        violations.append(f"{name}: not recovered within {RECOVERY_TIMEOUT:.0f}s of its heal")
                    else:
                        ready_after[fault.start] = recovered
                if order:
                    await clock.sleep(max(0.0, t0 + s.duration - clock.monotonic()))
            finally:  # also when interrupted: every task ends before the clients close
                stop_work.set()
                if workload is not None:
                    with contextlib.suppress(Exception):
                        await workload
                stop_streams.set()
                await asyncio.gather(*streams, return_exceptions=True)
        print("kos chaos: workload stopped; waiting for every NA to be ready, then reading etcd's history and "
              "checking ...", file=out, flush=True)  # fmt: skip
        nodes_ssl = ssl.create_default_context(cafile=str(cluster.ca_file))
        verdict = await judge(history.records, cluster.storage_url, start, ClientConfig.from_kubeconfig(cluster.kubeconfig),
                              nodes_endpoint=cluster.nodes_endpoint or None, nodes_ssl=nodes_ssl,
                              settle=READY_TIMEOUT, clock=clock)  # fmt: skip
        violations += verdict.violations
        figs = report.figures(history.records, ready_after, work.ready.values())
        print(report.format_report(figs, report.calls_summary(history.records), violations), file=out, flush=True)
        store = verdict.summary.get("store", {})
        print(f"store: revisions {store.get('start')}..{store.get('end')}, {store.get('changes')} changes checked; "
              f"streams: {verdict.summary.get('streams')}", file=out, flush=True)  # fmt: skip
    return 1 if violations else 0


async def _recovered(cluster: RunningCluster, history: History, healed: float, clock: Clock) -> float | None:
    """Wait until every apiserver is ready, etcd has all its members and one leader, and a write was
    acknowledged after `healed`; when (history time) the apiservers were all ready, None if not within
    RECOVERY_TIMEOUT."""
    deadline = clock.monotonic() + RECOVERY_TIMEOUT
    ready_at: float | None = None
    while clock.monotonic() < deadline:
        if ready_at is None and await cluster.all_apiservers_ready():
            ready_at = history.now()
        if ready_at is not None and _last_ack(history.records) > healed and await cluster.etcd_healthy():
            return ready_at
        await clock.sleep(POLL)
    return None
