"""The driver's schedule loop with several workers on `kos.testing.clock.FakeClock` (kos.driver.loop).

Workers sleep concurrently, so only a clock that wakes sleepers in due order can check them: every
operation must start exactly at its entry of the schedule, in the staggered stride of
`schedule.slot_index`, and together they must create and delete every planned NA.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kos.api.types import NetworkAttachment
from kos.driver import distribution, schedule, settings
from kos.driver.loop import ScheduleLoop
from kos.driver.metrics import DriverMetrics
from kos.driver.observer import Observer
from kos.driver.pingtests import PingTests
from kos.driver.records import Slot
from kos.testing.clock import FakeClock


class Calls:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.seen: list[tuple[float, str, str]] = []

    async def create(self, obj: NetworkAttachment) -> NetworkAttachment:
        self.seen.append((self.clock.monotonic(), "create", obj.metadata.name))
        return obj

    async def delete(self, cls: type[NetworkAttachment], namespace: str, name: str) -> Any:
        self.seen.append((self.clock.monotonic(), "delete", name))


@pytest.mark.parametrize(("threads", "num"), [(3, 7), (2, 6), (4, 4)])
async def test_concurrent_workers_start_each_operation_at_its_scheduled_time(threads: int, num: int) -> None:
    clock = FakeClock(start=0.0)
    s = settings.DriverSettings(server="http://x", nodes=("n",), num_attachments=num, threads=threads, rate=10.0)
    rng = random.Random(3)
    plan = distribution.plan(num_nets=2, top_net_size=4, rng=rng)
    metrics = DriverMetrics(CollectorRegistry(), "r")
    pings = PingTests(s, plan, "r", rng, clock)
    loop = ScheduleLoop(s, plan=plan, namespace="ns", observer=Observer(s, metrics, pings.domains, clock),
                        pings=pings, metrics=metrics, rng=rng, clock=clock)  # fmt: skip
    slots = [Slot(n, i, i + 1) for n in plan.networks for i in range(n.size)]
    offsets = schedule.offsets("steady", s.rate, 2 * num, rng)
    api = Calls(clock)
    run = asyncio.create_task(loop.run(api, slots, offsets))
    await clock.advance(offsets[-1] + 1.0)
    assert run.done()
    await run
    expected = sorted(
        offsets[schedule.slot_index(op, k, threads, num)]
        for k in range(threads)
        for planned in [schedule.creates_of_thread(num, threads, k)]
        for op in range(2 * planned)
    )
    assert [round(t, 9) for t, _, _ in api.seen] == [round(t, 9) for t in expected]
    created = [name for _, verb, name in api.seen if verb == "create"]
    assert sorted(created) == sorted(name for _, verb, name in api.seen if verb == "delete") and len(created) == num
    assert (loop.creates, loop.deletes, loop.ops_done) == (num, num, 2 * num)
    assert loop.late_ops == 1  # only worker 0's first operation, due the instant the schedule starts
