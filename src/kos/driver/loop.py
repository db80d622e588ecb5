"""The schedule loop: T workers create and delete NAs at the times `schedule.py` gives them.

Worker k owns every T-th slot (of a shuffled list) and takes schedule entries in the staggered
stride of `schedule.slot_index`. Warm-up fills its slots, cruise pairs each create with the delete of
its oldest NA, cool-down only deletes (skipped with `keep_population`; a shock test,
`wait_after_create`, stops after its creates). An operation waits until `t0 + offset + extra_delay`
on the injected clock's monotonic time; one that is already late runs at once and counts in
`late_ops` and `total_delay`, as the original driver reports them.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any, Protocol

from kos.api.errors import NotFound, StatusError
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.driver import distribution, schedule
from kos.driver.metrics import DriverMetrics
from kos.driver.observer import Observer
from kos.driver.pingtests import PingTests
from kos.driver.records import Record, Slot
from kos.driver.settings import DriverSettings
from kos.util.clock import Clock
from kos.util.log import get_logger

log = get_logger(__name__)

MAX_DELETE_BACKOFF = 5.0
"""Seconds; a refused delete is retried after 0.1 s, doubling up to this."""


class WorkloadAPI(Protocol):
    """The two calls the loop makes (`kos.client.rest.Client` is one)."""

    async def create(self, obj: NetworkAttachment) -> NetworkAttachment:
        """Create `obj`; a StatusError when the server refuses."""
        ...

    async def delete(self, cls: type[NetworkAttachment], namespace: str, name: str) -> Any:
        """Delete the named NA; NotFound when it is gone, another StatusError when the server refuses."""
        ...


class ScheduleLoop:
    """The workers of one run and what they counted."""

    def __init__(self, s: DriverSettings, *, plan: distribution.Plan, namespace: str, observer: Observer,
                 pings: PingTests, metrics: DriverMetrics, rng: random.Random, clock: Clock) -> None:  # fmt: skip
        self.s = s
        self.namespace = namespace
        self.observer = observer
        self.pings = pings
        self.metrics = metrics
        self.rng = rng
        self.clock = clock
        self.labels = {"app": "attachment-tput-driver", "runid": metrics.run_id}
        self.digits = 1 + int(math.log10(max(1, s.num_attachments)))
        self.subnet_counters: dict[int, int] = {n.vni: 0 for n in plan.networks}
        self.t0 = 0.0
        """The clock's monotonic time at the start of the schedule."""
        self.ops_done = 0
        self.late_ops = 0
        self.total_delay = 0.0
        """Seconds late operations started after their time, summed."""
        self.creates = 0
        self.deletes = 0
        self.failed_creates = 0

    async def run(self, api: WorkloadAPI, slots: list[Slot], offsets: list[float]) -> None:
        """Run `s.threads` workers over `slots` (worker k gets slots[k::threads]) until all are done."""
        threads = self.s.threads
        self.t0 = self.clock.monotonic()
        await asyncio.gather(*(self.worker(api, k, slots[k::threads], offsets) for k in range(threads)))

    async def worker(self, api: WorkloadAPI, k: int, owned: list[Slot], offsets: list[float]) -> None:
        """Worker k's share of the schedule: its creates and deletes, each at its time."""
        s = self.s
        planned = schedule.creates_of_thread(s.num_attachments, s.threads, k)
        creates = deletes = 0
        shock = s.wait_after_create > 0
        while deletes < planned:
            if shock and creates >= min(planned, len(owned)):
                return
            if s.keep_population and creates >= planned:
                return
            idx = schedule.slot_index(creates + deletes, k, s.threads, s.num_attachments)
            await self._wait_until(self.t0 + offsets[min(idx, len(offsets) - 1)] + self.pings.extra_delay)
            if self.observer.stopped:
                return
            if creates < deletes + len(owned) and creates < planned:
                await self.create(api, owned[creates % len(owned)], k, creates)
                creates += 1
            else:
                await self.delete(api, owned[deletes % len(owned)])
                deletes += 1
            self.ops_done += 1

    async def _wait_until(self, target: float) -> None:
        now = self.clock.monotonic()
        if target > now:
            await self.clock.sleep(target - now)
        else:
            self.late_ops += 1
            self.total_delay += now - target

    def _node(self, thread: int, creates: int) -> str:
        s = self.s
        if s.only_node:
            return s.only_node
        if s.round_robin:
            return s.nodes[(thread + s.threads * creates) % len(s.nodes)]
        return self.rng.choice(s.nodes)

    def _new_record(self, slot: Slot, thread: int, creates: int) -> Record:
        net = slot.net
        if len(net.subnets) > 1:
            self.subnet_counters[net.vni] += 1
            sub = net.subnets[self.subnet_counters[net.vni] % 2]
        else:
            sub = net.subnets[0]
        name = f"{net.vni:06x}-{slot.next_index:0{self.digits}d}"
        return Record(name=name, vni=net.vni, subnet=sub.name, node=self._node(thread, creates), thread=thread)

    def _attachment(self, r: Record, slot: Slot, pce: tuple[str, ...], pde: tuple[str, ...]) -> NetworkAttachment:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.clock.now().timestamp()))
        return NetworkAttachment(
            metadata=ObjectMeta(name=r.name, namespace=self.namespace, labels=dict(self.labels),
                                annotations={"slot": str(slot.index), "precise/createTimestamp": stamp}),
            spec=NetworkAttachmentSpec(node=r.node, subnet=r.subnet, post_create_exec=pce, post_delete_exec=pde),
        )  # fmt: skip

    async def create(self, api: WorkloadAPI, slot: Slot, thread: int, creates: int) -> None:
        """Create the slot's next NA, stamping the moment just before the call; a refusal is counted, not retried."""
        r = self._new_record(slot, thread, creates)
        pce, pde = await self.pings.commands(r)
        self.observer.track(r)
        slot.current = r
        na = self._attachment(r, slot, pce, pde)
        r.t_create = self.clock.now().timestamp()
        t0 = self.clock.monotonic()
        try:
            await api.create(na)
        except StatusError as e:
            r.failed = True
            r.closed = True
            slot.current = None
            self.failed_creates += 1
            self.metrics.failed_creates.labels(self.metrics.run_id).inc()
            log.warning("create failed", name=r.name, error=e)
            return
        r.create_latency = self.clock.monotonic() - t0
        self.metrics.create.labels(self.metrics.run_id).observe(r.create_latency)
        self.metrics.successful_creates.labels(self.metrics.run_id).inc()
        self.creates += 1

    async def delete(self, api: WorkloadAPI, slot: Slot) -> None:
        """Delete the slot's NA (closing its observation first), retrying refusals until the run stops."""
        r = slot.current
        if r is None:
            return  # its create failed: the delete is skipped, the schedule is not shifted
        slot.current = None
        slot.next_index += slot.net.size
        self.observer.close(r)
        t0 = self.clock.monotonic()
        if not await self._delete_until_gone(api, r.name):
            self.metrics.failed_deletes.labels(self.metrics.run_id).inc()
            return
        r.deleted = self.clock.now().timestamp()
        self.metrics.delete.labels(self.metrics.run_id).observe(self.clock.monotonic() - t0)
        self.metrics.successful_deletes.labels(self.metrics.run_id).inc()
        self.deletes += 1

    async def _delete_until_gone(self, api: WorkloadAPI, name: str) -> bool:
        """Whether the NA is gone (deleted, or not found); False if the run stopped while deletes were refused."""
        backoff = 0.1
        while True:
            try:
                await api.delete(NetworkAttachment, self.namespace, name)
                return True
            except NotFound:
                return True
            except StatusError as e:
                if self.observer.stopped:
                    return False
                log.info("delete failed; retrying", name=name, error=e, retry_in=backoff)
                await self.clock.sleep(backoff)
                backoff = min(backoff * 2, MAX_DELETE_BACKOFF)
