"""The timing helper observes every way a block can end, into prometheus_client and loopmetrics histograms."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram

from kos.util.loopmetrics import LoopHistogram
from kos.util.timing import Timed, observe_seconds


def loop_family(registry: CollectorRegistry) -> LoopHistogram:
    return LoopHistogram("kos_test_seconds", "test", ["op", "outcome"], buckets=[0.1, 1.0], registry=registry)


def counts(registry: CollectorRegistry) -> dict[tuple[str, ...], float]:
    """(op, outcome) → observations, from the registry's exposition."""
    return {(s.labels["op"], s.labels["outcome"]): s.value for m in registry.collect() for s in m.samples
            if s.name == "kos_test_seconds_count"}  # fmt: skip


def test_observe_seconds_takes_the_block_time() -> None:
    reg = CollectorRegistry()
    h = Histogram("kos_plain_seconds", "test", registry=reg)
    before = time.perf_counter()
    with observe_seconds(h):
        pass
    outer = time.perf_counter() - before
    assert reg.get_sample_value("kos_plain_seconds_count") == 1
    assert 0 <= (reg.get_sample_value("kos_plain_seconds_sum") or -1) <= outer
    with pytest.raises(KeyError), observe_seconds(h):
        raise KeyError("x")
    assert reg.get_sample_value("kos_plain_seconds_count") == 2  # a failed call is timed too


def test_the_outcome_is_ok_err_or_what_the_block_says() -> None:
    reg = CollectorRegistry()
    family = loop_family(reg)
    with Timed(family, "create"):
        pass
    with pytest.raises(ValueError), Timed(family, "create"):
        raise ValueError("bad")
    with Timed(family, "update") as t:
        t.outcome = "nf"
    with pytest.raises(ValueError), Timed(family, "update") as t:
        t.outcome = "conflict"
        raise ValueError("kept")
    assert counts(reg) == {("create", "ok"): 1, ("create", "err"): 1, ("update", "nf"): 1,
                           ("update", "conflict"): 1}  # fmt: skip


def test_prometheus_client_families_work_alike() -> None:
    reg = CollectorRegistry()
    family = Histogram("kos_test_seconds", "test", ["op", "outcome"], registry=reg)
    with Timed(family, "delete"):
        pass
    assert reg.get_sample_value("kos_test_seconds_count", {"op": "delete", "outcome": "ok"}) == 1


async def test_a_cancelled_block_observes_nothing() -> None:
    reg = CollectorRegistry()
    family = loop_family(reg)
    plain = Histogram("kos_plain_seconds", "test", registry=reg)
    entered = asyncio.Event()

    async def slow() -> None:
        with Timed(family, "create"), observe_seconds(plain):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(slow())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert counts(reg) == {} and reg.get_sample_value("kos_plain_seconds_count") == 0
