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
from kos.driver.records import Record, Slot
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


def _pings(clock: FakeClock, **kw: Any) -> tuple[PingTests, int]:
    s = settings.DriverSettings(server="http://x", nodes=("n",), test_fraction=1.0, pending_wait=5.0, **kw)
    plan = distribution.plan(num_nets=1, top_net_size=4, single_network=True, rng=random.Random(1), vni0=9)
    return PingTests(s, plan, "r", random.Random(1), clock), plan.networks[0].vni


async def test_a_new_na_waits_for_a_pending_peer_and_then_pings_it() -> None:
    clock = FakeClock(start=0.0)
    pings, vni = _pings(clock)
    first = Record(name="p", vni=vni, subnet="000009-a", node="n", thread=0, ipv4="10.0.0.2")
    create, _ = await pings.commands(first)  # nobody to ping yet: a half test, now pending
    assert len(create) == 4 and not first.full_test
    second = Record(name="q", vni=vni, subnet="000009-a", node="n", thread=0)
    waiting = asyncio.create_task(pings.commands(second))
    await clock.advance(2.0)
    assert not waiting.done()
    pings.domains[vni].tested(first, ok=True)
    create, delete = await waiting
    assert second.full_test and create[4:6] == ("10.0.0.2", "10") and delete[0].endswith("/RemoveNetNS")
    assert pings.extra_delay == 2.0  # the wait shifts the schedule


async def test_the_wait_for_a_peer_ends_at_pending_wait() -> None:
    clock = FakeClock(start=0.0)
    pings, vni = _pings(clock)
    await pings.commands(Record(name="p", vni=vni, subnet="000009-a", node="n", thread=0))
    second = Record(name="q", vni=vni, subnet="000009-a", node="n", thread=0)
    waiting = asyncio.create_task(pings.commands(second))
    await clock.advance(4.9)
    assert not waiting.done()
    await clock.advance(0.2)
    create, _ = await waiting
    assert not second.full_test and len(create) == 4 and pings.extra_delay == pytest.approx(5.0)
