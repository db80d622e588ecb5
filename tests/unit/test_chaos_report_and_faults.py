"""kos chaos without a cluster: the per-fault figures from synthetic records (kos.chaos.report), the seeded
fault order and the duration plan (kos.chaos.run, kos.chaos.faults), a stop fault that always continues what
it stopped and a kill that waits for the restart (on a FakeClock), and the CLI's usage errors."""

from __future__ import annotations

import asyncio
import random
import signal
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kos.chaos import faults, report
from kos.chaos.history import Call, Fault, History
from kos.chaos.run import WARMUP, ChaosSettings, PlanError, estimate, plan
from kos.cli.main import main
from kos.client.failover import FailoverTransport
from kos.testing.clock import FakeClock


def _call(i: int, start: float, end: float, outcome: str = "ok", op: str = "create", code: int = 201) -> Call:
    return Call(id=i, op=op, resource="networkattachments", namespace="chaos-0", name=f"n{i}", start=start, end=end,
                outcome=outcome, code=code)  # type: ignore[arg-type]  # fmt: skip


def test_longest_gap_counts_from_the_start_and_closes_at_the_first_time_after_the_end() -> None:
    assert report.longest_gap(10.0, [9.0, 10.5, 13.5, 14.0, 20.0], 14.0) == 3.0
    assert report.longest_gap(10.0, [9.0, 16.0, 17.0], 16.5) == 6.0  # start → first after it, then 16 → 17
    assert report.longest_gap(10.0, [9.0, 11.0], 12.0) is None  # nothing reached the end: never closed
    assert report.longest_gap(10.0, [11.0, 15.0], None) == 4.0


def test_figures_per_fault_from_calls_and_readiness() -> None:
    recs: list[Any] = [_call(i, t - 0.05, t) for i, t in enumerate([99.0, 99.5, 100.2], 1)]
    recs.append(Fault(name="etcd-leader-kill", targets=["etcd-1"], start=100.0, healed=101.0))
    recs += [
        _call(10, 100.1, 103.0, "unknown", code=503),  # in the fault's window
        _call(11, 100.3, 100.4, "failed", op="delete", code=404),
        _call(12, 101.5, 102.5),  # the first ack after the heal: 1.5 s after it
        _call(13, 102.6, 102.7, op="delete", code=200),
        _call(14, 102.0, 102.1, op="get", code=200),  # a read: not a write
    ]
    recs.append(Fault(name="quorum-loss", targets=["etcd-0", "etcd-2"], start=200.0, healed=210.0))
    recs.append(_call(20, 199.0, 205.0, "unknown", code=503))  # no write acknowledged after it: never recovered
    figs = report.figures(recs, {100.0: 101.8}, [99.8, 100.9, 103.5])
    leader, quorum = figs
    assert leader.targets == ("etcd-1",)
    assert leader.stall == pytest.approx(2.3)  # 100.2 → 102.5
    assert leader.write_recovery == pytest.approx(1.5) and leader.ready_recovery == pytest.approx(0.8)
    assert leader.ready_stall == pytest.approx(2.6)  # 100.9 → 103.5 (the first ready after recovery at 102.5)
    assert leader.errors == {"failed 404": 1, "unknown 503": 1} and leader.recovered
    assert quorum.stall is None and quorum.write_recovery is None and quorum.ready_recovery is None
    assert not quorum.recovered and quorum.errors == {"unknown 503": 1}
    text = report.format_report(figs, report.calls_summary(recs), ["quorum-loss: not recovered"])
    assert "etcd-leader-kill" in text and "never" in text and "1 violation(s):" in text
    assert report.calls_summary(recs)["total"] == 9


def _settings(duration: float, chosen: tuple[str, ...] = faults.FAULTS) -> ChaosSettings:
    return ChaosSettings(state_dir=Path("s"), seed=7, duration=duration, faults=chosen, history=Path("h"))


def test_the_seed_fixes_the_order_and_the_duration_spaces_the_faults() -> None:
    s = _settings(200.0)
    order, starts = plan(s, random.Random(7))
    assert sorted(order) == sorted(faults.FAULTS)
    assert plan(s, random.Random(7))[0] == order  # repeatable
    assert any(plan(s, random.Random(seed))[0] != order for seed in range(8, 20))  # and the seed matters
    need = WARMUP + sum(estimate(f, s) for f in order)
    assert starts[0] == WARMUP
    slots = [b - a for a, b in zip(starts, [*starts[1:], 200.0], strict=True)]  # each in proportion, all of it
    scale = (200.0 - WARMUP) / (need - WARMUP)
    assert slots == pytest.approx([estimate(f, s) * scale for f in order])
    with pytest.raises(PlanError, match="too short for 7 fault"):
        plan(_settings(need - 1), random.Random(7))
    assert plan(_settings(30.0, ("apiserver-kill",)), random.Random(1))[0] == ["apiserver-kill"]


def test_parse_faults() -> None:
    assert faults.parse_faults("all") == list(faults.FAULTS) == faults.parse_faults("")
    assert faults.parse_faults("quorum-loss, apiserver-kill,quorum-loss") == ["quorum-loss", "apiserver-kill"]
    with pytest.raises(ValueError, match="unknown fault 'etcd-kill'"):
        faults.parse_faults("etcd-kill")


class _FakeCluster:
    """What the faults ask of a RunningCluster: signals sent, and a restart after SIGKILL when told."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.pids = {"apiserver-0": 10, "apiserver-1": 11, "etcd-0": 20, "etcd-1": 21, "etcd-2": 22}
        self.restarted: set[str] = set()

    def role(self, role: str) -> list[Any]:
        from kos.util.clusterfile import Component

        return [Component(n, role, p, f"https://{n}", None) for n, p in self.pids.items() if n.startswith(role)]

    async def etcd_leader(self) -> Any:
        return self.role("etcd")[0]

    def signal(self, name: str, sig: int) -> int:
        self.sent.append((name, sig))
        return self.pids[name]

    def running_again(self, name: str, old_pid: int | None) -> bool:
        return name in self.restarted


@pytest.fixture
def opened() -> Iterator[list[History]]:
    """The histories a test opened, closed after it."""
    out: list[History] = []
    yield out
    for h in out:
        h.close()


def _ctx(
    opened: list[History], tmp: Path, clock: FakeClock, cluster: _FakeCluster, name: str = "h"
) -> faults.FaultContext:
    history = History(tmp / f"{name}.jsonl", clock=clock)
    opened.append(history)
    failover = FailoverTransport([object(), object()], ["https://apiserver-0", "https://apiserver-1"])  # type: ignore[list-item]
    failover.current = 1  # the workload's client is on apiserver-1 now
    client = types.SimpleNamespace(transport=failover)
    return faults.FaultContext(cluster, history, client=client, clock=clock, rng=random.Random(1),  # type: ignore[arg-type]
                               stop_seconds=20.0, quorum_seconds=10.0)  # fmt: skip


async def test_quorum_loss_stops_a_majority_and_continues_it_even_when_cancelled(
    tmp_path: Path, opened: list[History]
) -> None:
    clock, cluster = FakeClock(), _FakeCluster()
    ctx = _ctx(opened, tmp_path, clock, cluster)
    task = asyncio.create_task(faults.inject("quorum-loss", ctx))
    await clock.advance(5.0)
    stopped = [n for n, s in cluster.sent if s == signal.SIGSTOP]
    assert len(stopped) == 2 and all(n.startswith("etcd-") for n in stopped)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(n for n, s in cluster.sent if s == signal.SIGCONT) == sorted(stopped)
    (fault,) = ctx.history.records
    assert isinstance(fault, Fault) and fault.name == "quorum-loss" and fault.healed == pytest.approx(1005.0)

    clock2 = FakeClock()
    ctx2 = _ctx(opened, tmp_path, clock2, _FakeCluster(), "h2")
    task = asyncio.create_task(faults.inject("quorum-loss", ctx2))
    await clock2.advance(10.0)
    done = await task
    assert done.healed - done.start == pytest.approx(10.0)


async def test_a_kill_is_healed_when_the_process_runs_again(tmp_path: Path, opened: list[History]) -> None:
    clock, cluster = FakeClock(), _FakeCluster()
    ctx = _ctx(opened, tmp_path, clock, cluster)
    task = asyncio.create_task(faults.inject("apiserver-kill", ctx))
    await clock.advance(3.0)
    ((target, sig),) = cluster.sent
    assert (target, sig) == ("apiserver-1", signal.SIGKILL) and not task.done()  # the one the client uses
    cluster.restarted.add(target)
    await clock.advance(0.2)
    fault = await task
    assert fault.targets == [target] and fault.healed == pytest.approx(1003.1, abs=0.11)


async def test_a_kill_never_healed_is_an_error_and_still_recorded(tmp_path: Path, opened: list[History]) -> None:
    clock = FakeClock()
    ctx = _ctx(opened, tmp_path, clock, _FakeCluster())
    task = asyncio.create_task(faults.inject("etcd-follower-kill", ctx))
    await clock.advance(faults.RESTART_TIMEOUT + 1)
    with pytest.raises(faults.FaultError, match="running again not within"):
        await task
    (fault,) = ctx.history.records
    assert isinstance(fault, Fault) and fault.healed == 0.0 and "not healed" in fault.note


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--faults", "etcd-kill"], "--faults / KOS_FAULTS: unknown fault 'etcd-kill'"),
        (["--duration", "20"], "--duration / KOS_DURATION: 20s is too short for 7 fault(s)"),
        (["--duration", "100"], "no "),  # no cluster.json in the state directory
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                           says: str) -> None:  # fmt: skip
    assert main(["chaos", "--state-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
