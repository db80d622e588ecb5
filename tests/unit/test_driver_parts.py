"""The driver's parts without an apiserver: the summary, the observer and the schedule loop (kos.driver).

The schedule loop runs on a stepping clock whose `sleep` moves time on at once, which is exact for one
worker: every operation must start at its offset, and a slow call must make the next ones late.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kos.api.errors import NotFound, ServiceUnavailable
from kos.api.meta import ExtendedObjectMeta, ObjectMeta, ObjectWrite
from kos.api.types import (
    SECTION_ADDRESS,
    SECTION_IMPL,
    SECTION_SPEC,
    ExecReport,
    NetworkAttachment,
    NetworkAttachmentErrors,
    NetworkAttachmentSpec,
    NetworkAttachmentStatus,
)
from kos.driver import distribution, schedule, settings
from kos.driver.loop import ScheduleLoop
from kos.driver.metrics import DriverMetrics
from kos.driver.observer import Observer
from kos.driver.pingtests import PingTests
from kos.driver.records import Record, Slot
from kos.driver.summary import Counts, quantile, stats, summary

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class StepClock:
    """Monotonic and wall time that move only by `sleep` (at once) or `step`: exact for one sleeper at a time."""

    def __init__(self, start: float = 100.0) -> None:
        self.t = start

    def now(self) -> datetime.datetime:
        return EPOCH + datetime.timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)

    def step(self, seconds: float) -> None:
        self.t += seconds


def wall(clock: StepClock) -> float:
    return clock.now().timestamp()


# --- summary ---------------------------------------------------------------------------------


def test_quantiles_are_nearest_rank() -> None:
    v = [float(i) for i in range(1, 11)]  # 1 … 10
    assert (quantile(v, 0.5), quantile(v, 0.9), quantile(v, 0.99), quantile(v, 0.0)) == (5.0, 9.0, 10.0, 1.0)
    assert stats([3.0, math.nan, 1.0, 2.0]) == {"p50": 2.0, "p90": 3.0, "p99": 3.0, "max": 3.0, "count": 3}
    assert stats([math.nan]) == {"p50": None, "p90": None, "p99": None, "max": None, "count": 0}


def _record(i: int, *, ready: float = math.nan, failed: bool = False, tested: float = math.nan,
            test_exit: int | None = None, full: bool = False, broken: float = math.nan) -> Record:  # fmt: skip
    return Record(name=f"na-{i}", vni=1, subnet="s", node="n", thread=0, t_create=1000.0 + i,
                  create_latency=0.01 * (i + 1), addressed=1000.0 + i + 0.5, ready=ready, broken=broken,
                  tested=tested, test_exit=test_exit, full_test=full, failed=failed,
                  server_spec=2000.0, server_address=2000.25, server_impl=2000.75)  # fmt: skip


def test_summary_of_known_observations() -> None:
    records = [
        _record(0, ready=1000.0 + 1.0, tested=1002.0, test_exit=0, full=True),  # ready after 1 s
        _record(1, ready=1001.0 + 2.0, tested=1004.0, test_exit=1),  # ready after 2 s, half test failed
        _record(2),  # addressed, never ready
        _record(3, failed=True),  # its create failed: in no statistic
        _record(4, broken=1004.0 + 3.0),
    ]
    plan = distribution.plan(num_nets=2, top_net_size=4, rng=random.Random(1))
    s = settings.DriverSettings(server="http://x", rate=50.0, test_fraction=0.5)
    counts = Counts(creates=4, deletes=4, failed_creates=1, ops_done=10, late_ops=3, total_delay=0.5, elapsed=4.0)
    out = summary(s, run_id="r", namespace="r", plan=plan, records=records, counts=counts)
    assert (out["created"], out["deleted"], out["ready"], out["never_ready"], out["broken"]) == (4, 4, 2, 2, 1)
    assert out["never_ready_names"] == ["na-2", "na-4"]
    assert out["achieved_rate"] == 2.0 and out["achieved_create_rate"] == 1.0 and out["target_rate"] == 50.0
    assert out["late_ops_percent"] == 30.0 and out["total_delay_ms"] == 500.0
    lat = out["latency_seconds"]
    assert lat["create_to_ready"] == {"p50": 1.0, "p90": 2.0, "p99": 2.0, "max": 2.0, "count": 2}
    assert lat["create_to_addressed"]["count"] == 4 and lat["create_to_addressed"]["max"] == 0.5
    assert lat["create"]["max"] == 0.05 and lat["create"]["count"] == 4
    assert lat["addressed_to_implemented"]["p50"] == 0.5 and lat["server_create_to_addressed"]["p50"] == 0.25
    assert out["tests"] == {"full": 1, "full_passed": 1, "half": 1, "half_passed": 0,
                            "failed_names": ["na-1 (exit 1)"], "untested_ready": 0}  # fmt: skip
    assert out["plan"]["slots"] == plan.num_slots and out["settings"]["rate"] == 50.0


# --- observer --------------------------------------------------------------------------------


def _na(name: str, *, ipv4: str = "", ready: bool = False, ipam: tuple[str, ...] = (), exit: int | None = None,
        writes: tuple[tuple[str, float], ...] = ()) -> NetworkAttachment:  # fmt: skip
    impl = {"mac_address": "m", "ifc_name": "i", "host_ip": "h"} if ready else {}
    report = ExecReport(exit_status=exit, std_err="boom\n") if exit is not None else None
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace="ns"),
        extended_metadata=ExtendedObjectMeta(writes=tuple(
            ObjectWrite(section=s, server_time=EPOCH + datetime.timedelta(seconds=t)) for s, t in writes)),
        spec=NetworkAttachmentSpec(node="n", subnet="s"),
        status=NetworkAttachmentStatus(ipv4=ipv4, errors=NetworkAttachmentErrors(ipam=ipam),
                                       post_create_exec_report=report, **impl),
    )  # fmt: skip


def _observer(**kw: Any) -> tuple[Observer, StepClock, CollectorRegistry]:
    clock = StepClock()
    reg = CollectorRegistry()
    s = settings.DriverSettings(server="http://x", **kw)
    plan = distribution.plan(num_nets=1, top_net_size=2, rng=random.Random(1), vni0=7)
    pings = PingTests(s, plan, "r", random.Random(1), clock)
    return Observer(s, DriverMetrics(reg, "r"), pings.domains, clock), clock, reg


def test_the_observer_stamps_each_stage_once_at_its_first_notification() -> None:
    obs, clock, reg = _observer()
    r = Record(name="a", vni=7, subnet="s", node="n", thread=0, t_create=wall(clock))
    obs.track(r)
    obs.observe(_na("other", ipv4="10.0.0.9"))  # not ours: ignored
    clock.step(0.5)
    obs.observe(_na("a", writes=((SECTION_SPEC, 1.0),)))
    assert math.isnan(r.addressed) and r.server_spec == EPOCH.timestamp() + 1.0
    clock.step(0.5)
    obs.observe(_na("a", ipv4="10.0.0.1", writes=((SECTION_ADDRESS, 2.0),)))
    clock.step(1.0)
    na = _na("a", ipv4="10.0.0.1", ready=True, writes=((SECTION_ADDRESS, 2.0), (SECTION_IMPL, 3.0)))
    obs.observe(na)
    clock.step(5.0)
    obs.observe(na)  # a repeat changes nothing
    assert (r.addressed - r.t_create, r.ready - r.t_create) == (1.0, 2.0)
    assert (r.ipv4, r.server_impl - r.server_address) == ("10.0.0.1", 1.0)
    obs.close(r)
    obs.close(r)  # idempotent: observed once
    ready, addressed = "kos_driver_attachment_create_to_ready", "kos_driver_attachment_create_to_addressed"
    assert reg.get_sample_value(f"{ready}_latency_seconds_count", {"runID": "r"}) == 1
    # (no _sum: the original's buckets start at -1, and a histogram with negative buckets has none)
    assert reg.get_sample_value(f"{ready}_latency_seconds_bucket", {"runID": "r", "le": "1.5"}) == 0
    assert reg.get_sample_value(f"{ready}_latency_seconds_bucket", {"runID": "r", "le": "2.0"}) == 1
    assert reg.get_sample_value(f"{addressed}_latency_seconds_bucket", {"runID": "r", "le": "1.0"}) == 1
    assert reg.get_sample_value(f"{addressed}_latency_seconds_bucket", {"runID": "r", "le": "0.75"}) == 0
    clock.step(1.0)
    obs.observe(_na("a", ipv4="10.0.0.1", ready=True, exit=0))  # tardy: its slot moved on
    assert math.isnan(r.tested)


def test_waiting_for_an_address_is_not_a_break_but_an_ipam_error_is() -> None:
    obs, clock, _ = _observer(stop_on_break=True)
    r = Record(name="a", vni=7, subnet="s", node="n", thread=0, t_create=wall(clock))
    obs.track(r)
    obs.observe(_na("a", ipam=("Subnet s has run out of IPs",)))
    assert math.isnan(r.broken) and not obs.stopped
    obs.observe(_na("a", ipam=("Subnet s does not exist",)))
    assert not math.isnan(r.broken) and obs.stopped == "a broke: Subnet s does not exist"


def test_a_failed_test_stops_the_run_when_told_to() -> None:
    obs, _, _ = _observer(stop_on_ping_fail=True)
    r = Record(name="a", vni=7, subnet="s", node="n", thread=0)
    obs.track(r)
    obs.observe(_na("a", ipv4="10.0.0.1", ready=True, exit=2))
    assert r.test_exit == 2 and obs.stopped == "a's test exited 2: boom"


# --- schedule loop ---------------------------------------------------------------------------


class FakeAPI:
    """Records each call as (clock time, verb, name); a create can take time or be refused."""

    def __init__(self, clock: StepClock, *, create_takes: float = 0.0, refuse: set[str] | None = None) -> None:
        self.clock = clock
        self.create_takes = create_takes
        self.refuse = refuse or set()
        self.calls: list[tuple[float, str, str]] = []
        self.deleted: set[str] = set()

    async def create(self, obj: NetworkAttachment) -> NetworkAttachment:
        self.calls.append((self.clock.monotonic(), "create", obj.metadata.name))
        self.clock.step(self.create_takes)
        if obj.metadata.name in self.refuse:
            raise ServiceUnavailable("no")
        return obj

    async def delete(self, cls: type[NetworkAttachment], namespace: str, name: str) -> Any:
        self.calls.append((self.clock.monotonic(), "delete", name))
        if name in self.deleted:
            raise NotFound("gone")
        self.deleted.add(name)


def _loop(clock: StepClock, **kw: Any) -> tuple[ScheduleLoop, list[Slot], list[float], Observer]:
    s = settings.DriverSettings(server="http://x", nodes=("n0", "n1"), round_robin=True, rate=10.0, **kw)
    rng = random.Random(1)
    plan = distribution.plan(num_nets=1, top_net_size=2, single_network=True, rng=rng, vni0=7)
    reg = DriverMetrics(CollectorRegistry(), "r")
    pings = PingTests(s, plan, "r", rng, clock)
    obs = Observer(s, reg, pings.domains, clock)
    loop = ScheduleLoop(s, plan=plan, namespace="ns", observer=obs, pings=pings, metrics=reg, rng=rng, clock=clock)
    slots = [Slot(n, i, i + 1) for n in plan.networks for i in range(n.size)]
    offsets = schedule.offsets(s.ops_distribution, s.rate, 2 * s.num_attachments, rng)
    return loop, slots, offsets, obs


async def test_one_worker_follows_the_schedule_warm_up_cruise_cool_down() -> None:
    clock = StepClock()
    loop, slots, offsets, obs = _loop(clock, num_attachments=3)
    api = FakeAPI(clock)
    await loop.run(api, slots, offsets)
    # two slots: fill both, then each create is paired with the delete of the oldest, then only deletes
    assert [(round(t - 100.0, 6), verb) for t, verb, _ in api.calls] == [
        (0.0, "create"), (0.1, "create"), (0.2, "delete"), (0.3, "create"), (0.4, "delete"), (0.5, "delete"),
    ]  # fmt: skip
    assert [name for _, _, name in api.calls] == ["000007-1", "000007-2", "000007-1", "000007-3", "000007-2",
                                                  "000007-3"]  # fmt: skip
    assert [r.node for r in obs.records] == ["n0", "n1", "n0"]
    # the first operation is due the moment the schedule starts: "late" by nothing, as the original counts it
    assert (loop.creates, loop.deletes, loop.ops_done, loop.late_ops, loop.total_delay) == (3, 3, 6, 1, 0.0)
    assert all(r.closed for r in obs.records)


async def test_a_slow_call_makes_later_operations_late() -> None:
    clock = StepClock()
    loop, slots, offsets, _ = _loop(clock, num_attachments=2)
    api = FakeAPI(clock, create_takes=0.25)
    await loop.run(api, slots, offsets)
    starts = [round(t - 100.0, 6) for t, _, _ in api.calls]
    assert starts == [0.0, 0.25, 0.5, 0.5]  # ops due at 0.1, 0.2, 0.3 start when the previous create returns
    assert loop.late_ops == 4 and loop.total_delay == pytest.approx(0 + 0.15 + 0.3 + 0.2)
    assert loop.creates == 2 and all(r.create_latency == pytest.approx(0.25) for r in loop.observer.records)


async def test_a_refused_create_is_counted_and_its_delete_skipped() -> None:
    clock = StepClock()
    loop, slots, offsets, obs = _loop(clock, num_attachments=2)
    api = FakeAPI(clock, refuse={"000007-1"})
    await loop.run(api, slots, offsets)
    assert [(verb, name) for _, verb, name in api.calls] == [("create", "000007-1"), ("create", "000007-2"),
                                                             ("delete", "000007-2")]  # fmt: skip
    assert (loop.creates, loop.failed_creates, loop.deletes, loop.ops_done) == (1, 1, 1, 4)
    assert obs.records[0].failed and obs.records[0].closed


async def test_a_stop_ends_the_workers_before_their_next_operation() -> None:
    clock = StepClock()
    loop, slots, offsets, obs = _loop(clock, num_attachments=3)
    api = FakeAPI(clock)
    real_create = api.create

    async def create_then_stop(obj: NetworkAttachment) -> NetworkAttachment:
        obs.stopped = "told to"
        return await real_create(obj)

    api.create = create_then_stop  # type: ignore[method-assign]
    await loop.run(api, slots, offsets)
    assert len(api.calls) == 1 and loop.ops_done == 1
