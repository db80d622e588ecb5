"""Batching of concurrent fabric calls, and attribution of a failed bundle's error to the member that caused it."""

from __future__ import annotations

import asyncio

import pytest

from kos.fabric.ovs.batch import Batcher
from kos.fabric.ovs.ofctl import FlowBatcher, OfctlError, parse_error


async def test_calls_arriving_during_a_batch_form_the_next_one() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    seen: list[list[int]] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        if len(seen) == 1:
            started.set()
            await release.wait()
        return [i * 10 for i in items]

    b: Batcher[int, int] = Batcher(run, name="t")
    first = asyncio.create_task(b.submit(1))
    await asyncio.wait_for(started.wait(), 5)  # the first batch is running
    rest = [asyncio.create_task(b.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0)  # one turn of the loop: each task runs submit() up to its await, its item queued
    release.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert seen == [[1], [2, 3, 4, 5, 6]]
    assert b.batches == 2


async def test_each_caller_gets_its_own_outcome_and_max_items() -> None:
    async def run(items: list[int]) -> list[int | BaseException]:
        return [ValueError(i) if i % 2 else i for i in items]

    b: Batcher[int, int] = Batcher(run, name="t", max_items=2)
    outcomes = await asyncio.gather(*(b.submit(i) for i in range(5)), return_exceptions=True)
    assert [o if isinstance(o, int) else str(o) for o in outcomes] == [0, "1", 2, "3", 4]
    assert b.batches == 3


async def test_a_failing_batch_function_fails_every_member() -> None:
    async def run(items: list[int]) -> list[int | BaseException]:
        raise RuntimeError("boom")

    b: Batcher[int, int] = Batcher(run, name="t")
    outcomes = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)


class FakeOfctl:
    """A switch that rejects any bundle containing a line with "bad" (naming the line or not) and records the rest."""

    def __init__(self, *, name_line: bool, unreachable: bool = False) -> None:
        self.name_line = name_line
        self.unreachable = unreachable
        self.calls: list[list[str]] = []
        self.applied: list[str] = []

    async def bundle(self, lines: list[str]) -> None:
        self.calls.append(lines)
        if self.unreachable:
            raise OfctlError("cannot reach bridge: connecting to unix:/x (No such file)", unreachable=True)
        for n, ln in enumerate(lines, 1):
            if "bad" in ln:
                raise OfctlError("unknown keyword bad", line=n if self.name_line else None)
        self.applied += lines


@pytest.mark.parametrize("name_line", [True, False])
async def test_failed_bundle_is_retried_without_the_culprit(name_line: bool) -> None:
    fake = FakeOfctl(name_line=name_line)
    fb = FlowBatcher(fake)  # type: ignore[arg-type]
    members = [["add a1", "add a2"], ["add b1"], ["add c1", "add bad", "add c3"], ["add d1"], ["delete e1"]]
    outcomes = await asyncio.gather(*(fb.apply(m) for m in members), return_exceptions=True)
    assert [o is None for o in outcomes] == [True, True, False, True, True]
    err = outcomes[2]
    assert isinstance(err, OfctlError) and "add bad" in str(err)
    assert fake.applied == ["add a1", "add a2", "add b1", "add d1", "delete e1"]  # in submission order
    if name_line:
        assert len(fake.calls) == 2  # the whole batch, then the rest in one go
    else:
        assert len(fake.calls) > 2  # halves until the culprit is alone


async def test_unreachable_switch_fails_all_at_once() -> None:
    fake = FakeOfctl(name_line=True, unreachable=True)
    fb = FlowBatcher(fake)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(*(fb.apply([f"add {i}"]) for i in range(4)), return_exceptions=True)
    assert all(isinstance(o, OfctlError) and o.unreachable for o in outcomes)
    assert len(fake.calls) == 1


def test_parse_error() -> None:
    e = parse_error("ovs-ofctl: -:2: unknown keyword bogus\n")
    assert (e.line, str(e), e.unreachable) == (2, "unknown keyword bogus", False)
    e = parse_error("ovs-ofctl: connecting to unix:/tmp/x/kos.mgmt (No such file or directory)\n")
    assert e.line is None and e.unreachable
    e = parse_error("ovs-ofctl: -:1: actions are invalid with specified match (OFPBIC_BAD_TABLE_ID)\n")
    assert e.line == 1 and "OFPBIC_BAD_TABLE_ID" in str(e)
    # a flow mod the switch refused inside the bundle (what OVS 3.1 prints)
    e = parse_error(
        "Error OFPBAC_BAD_OUT_GROUP for: OFPT_FLOW_MOD (OF1.3) (xid=0x3): ADD table:1 priority=5 actions=group:7\n"
        "Error OFPBFC_MSG_FAILED for: ONFT_BUNDLE_CONTROL (OF1.3) (xid=0x6):\n"
        " bundle_id=0 type=COMMIT_REQUEST flags=atomic ordered\n"
        "ovs-ofctl: talking to unix:/tmp/x/kos.mgmt (Protocol error)\n"
    )
    assert e.line is None and not e.unreachable and "OFPBAC_BAD_OUT_GROUP" in str(e)
