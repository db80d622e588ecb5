"""The workload driver: creates and deletes NetworkAttachments on a schedule and times every stage (reference §7).

Set-up: a plan of power-law virtual networks (`distribution.py`), one or two subnets each, created
in the run's namespace and waited for until validated. Then the schedule loop (`loop.py`) runs T
workers ("threads") that each own a share of the slots and follow the schedule (`schedule.py`):
warm-up fills every slot, cruise pairs each create with a delete of an older NA, cool-down only
deletes. An informer watches the run's NAs and the observer (`observer.py`) records, per NA, when it
was addressed, ready, broken or tested. Every stage is measured from the moment just before the
create call (client time, as the original does) and, for the stages the server stamps, from the
server's write times too. The run directory gets the set-up files (`output.py`), the summary
(`summary.py`), the histograms and (`report.py`) the per-NA CSV and an HTML report with plots.

Every wait — the schedule, the settling at the end, retries — reads the injected clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from kos.api.errors import StatusError
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, Subnet, SubnetSpec
from kos.client.informer import Informer
from kos.client.rest import Client
from kos.driver import distribution, output, schedule
from kos.driver.loop import ScheduleLoop
from kos.driver.metrics import DriverMetrics
from kos.driver.observer import Observer
from kos.driver.pingtests import PingTests
from kos.driver.records import Record, Slot
from kos.driver.settings import (
    RUN_ID,
    DriverError,
    DriverSettings,
    check,
    check_against_plan,
    generated_run_id,
    namespace_of,
    parse_nodes,
)
from kos.driver.summary import Counts, summary
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

__all__ = ["RUN_ID", "Driver", "DriverError", "DriverSettings", "parse_nodes"]

log = get_logger(__name__)

SUBNET_VALIDATION_TIMEOUT = 60.0
"""Seconds the set-up waits for the controller manager to validate the run's subnets."""
POLL_INTERVAL = 0.05
"""Seconds between checks while waiting for subnets, or for straggling notifications at the end."""
PROGRESS_INTERVAL = 0.25
"""Seconds between calls of the progress callback."""


class Driver:
    """One run: its plan, its observer and schedule loop, and the files it writes."""

    def __init__(self, s: DriverSettings, *, clock: Clock = REAL_CLOCK) -> None:
        check(s)
        self.s = s
        self.clock = clock
        self.rng = random.Random(s.seed)
        self.run_id = s.run_id or generated_run_id(random.Random())
        self.namespace = namespace_of(self.run_id)
        self.output = s.output or Path(self.run_id)
        self.plan = distribution.plan(
            num_nets=s.num_nets, top_net_size=s.top_net_size, exponent=s.exponent, bias=s.bias,
            base_address=s.base_address, single_network=s.single_network,
            subnet_size_factor=s.subnet_size_factor, rng=self.rng,
        )  # fmt: skip
        check_against_plan(s, self.plan)
        self.registry = CollectorRegistry()
        self.metrics = DriverMetrics(self.registry, self.run_id)
        self.pings = PingTests(s, self.plan, self.run_id, self.rng, clock)
        self.observer = Observer(s, self.metrics, self.pings.domains, clock)
        self.loop = ScheduleLoop(s, plan=self.plan, namespace=self.namespace, observer=self.observer,
                                 pings=self.pings, metrics=self.metrics, rng=self.rng, clock=clock)  # fmt: skip
        self.t_end = 0.0
        self.wall_t0 = 0.0
        """Wall time (epoch seconds) at the start of the schedule: the origin of the report's time axes."""

    # what the progress display reads
    @property
    def records(self) -> list[Record]:
        return self.observer.records

    @property
    def ops_done(self) -> int:
        return self.loop.ops_done

    @property
    def creates(self) -> int:
        return self.loop.creates

    @property
    def deletes(self) -> int:
        return self.loop.deletes

    async def create_subnets(self, client: Client) -> None:
        """Create the plan's subnets and wait until the controller manager has validated them all (DriverError)."""
        labels = {"app": "attachment-tput-driver", "runid": self.run_id}
        for n in self.plan.networks:
            for sp in n.subnets:
                try:
                    await client.create(Subnet(metadata=ObjectMeta(name=sp.name, namespace=self.namespace,
                                                                   labels=labels),
                                               spec=SubnetSpec(vni=n.vni, ipv4=sp.cidr)))  # fmt: skip
                except StatusError as e:
                    raise DriverError(f"creating subnet {sp.name} ({sp.cidr}, VNI {n.vni}) failed: {e}") from e
        want = sum(len(n.subnets) for n in self.plan.networks)
        deadline = self.clock.monotonic() + SUBNET_VALIDATION_TIMEOUT
        while self.clock.monotonic() < deadline:
            subnets, _ = await client.list(Subnet, self.namespace, label_selector=f"runid={self.run_id}")
            bad = [s for s in subnets if s.status.errors]
            if bad:
                raise DriverError(f"subnet {bad[0].metadata.name} failed validation: {'; '.join(bad[0].status.errors)}")
            if sum(1 for s in subnets if s.status.validated) == want:
                return
            await self.clock.sleep(POLL_INTERVAL)
        raise DriverError("the subnets were not validated within 60 s: is the controller manager running?")

    async def run(self, on_progress: Callable[[Driver], None] | None = None) -> dict[str, Any]:
        """Set up, run the schedule, settle, and return the summary (for `estimate`, the plan's figures only)."""
        s = self.s
        output.write_plan_files(self.output, self.plan)
        if s.estimate:
            return {"run_id": self.run_id, "estimate": True, "num_slots": self.plan.num_slots,
                    "avg_peers": self.plan.avg_peers, "break_point": self.plan.break_point}  # fmt: skip
        offsets = schedule.offsets(s.ops_distribution, s.rate, 2 * s.num_attachments, self.rng)
        if s.dump_ops_times:
            output.write_schedule(self.output, offsets, distribution_name=s.ops_distribution, rate=s.rate,
                                  threads=s.threads)  # fmt: skip
        async with Client(s.client or s.server, user_agent=f"kos-driver/{self.run_id}", watch_mux=True) as client:
            await self.create_subnets(client)
            slots = self._slots()
            informer: Informer[NetworkAttachment] = Informer(
                client, NetworkAttachment, namespace=self.namespace, label_selector=f"runid={self.run_id}",
            )  # fmt: skip
            informer.add_handlers(self.observer.observe, lambda _old, new: self.observer.observe(new))
            informer.start()
            await informer.wait_synced(30)
            log.warning("run starting", run=self.run_id, networks=len(self.plan.networks), slots=self.plan.num_slots,
                        avg_peers=round(self.plan.avg_peers, 2), break_point=self.plan.break_point,
                        attachments=s.num_attachments, rate=s.rate)  # fmt: skip
            try:
                await self._schedule(client, slots, offsets, on_progress)
            finally:
                await informer.stop()
        output.write_metrics(self.output, self.registry)
        return self.summary()

    def _slots(self) -> list[Slot]:
        """Every slot of the plan, shuffled; fewer workers when there are fewer slots than `--threads`."""
        slots = [Slot(n, i, i + 1) for n in self.plan.networks for i in range(n.size)]
        self.rng.shuffle(slots)
        self.rng.shuffle(slots)
        threads = min(self.s.threads, len(slots))
        if threads != self.s.threads:
            self.s = self.loop.s = dataclasses.replace(self.s, threads=threads)
        return slots

    async def _schedule(
        self, client: Client, slots: list[Slot], offsets: list[float], on_progress: Callable[[Driver], None] | None
    ) -> None:
        self.wall_t0 = self.clock.now().timestamp()
        progress = asyncio.create_task(self._progress(on_progress)) if on_progress else None
        try:
            await self.loop.run(client, slots, offsets)
            if self.s.wait_after_create:
                await self.clock.sleep(self.s.wait_after_create)
            else:
                await self._settle(self.s.wait_after_delete)
            self.t_end = self.clock.monotonic()
            self.observer.close_all()
        finally:
            if progress is not None:
                progress.cancel()

    async def _settle(self, seconds: float) -> None:
        """Wait for straggling notifications: up to `seconds`, less once every open NA is ready or broken."""
        deadline = self.clock.monotonic() + seconds
        while self.clock.monotonic() < deadline:
            if self.observer.settled():
                await self.clock.sleep(min(0.2, max(0.0, deadline - self.clock.monotonic())))
                return
            await self.clock.sleep(POLL_INTERVAL)

    async def _progress(self, cb: Callable[[Driver], None]) -> None:
        while True:
            cb(self)
            await self.clock.sleep(PROGRESS_INTERVAL)

    def summary(self) -> dict[str, Any]:
        """The run's summary so far (see `summary.summary`)."""
        loop = self.loop
        counts = Counts(
            creates=loop.creates, deletes=loop.deletes, failed_creates=loop.failed_creates, ops_done=loop.ops_done,
            late_ops=loop.late_ops, total_delay=loop.total_delay,
            elapsed=(self.t_end or self.clock.monotonic()) - loop.t0, stopped=self.observer.stopped,
        )  # fmt: skip
        return summary(self.s, run_id=self.run_id, namespace=self.namespace, plan=self.plan,
                       records=self.observer.records, counts=counts)  # fmt: skip
