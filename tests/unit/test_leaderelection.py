"""Leader election on a FakeClock against one FakeAPI (kos.controllers.leaderelection).

Two candidates campaign for one Lease: one leads; a leader cut off from the apiserver stops leading once its
renew deadline passes and the other takes over only after the lease duration since it last saw the record
change; a clean stop releases the Lease so the other takes over at its next retry; at no time do both lead.
"""

from __future__ import annotations

import asyncio
import random
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from kos.api import errors
from kos.api.types import LEADER_ELECTION_NAMESPACE, Lease
from kos.client.api import API
from kos.controllers.leaderelection import LeaderElectionConfig, LeaderElector, LeaderMetrics
from kos.testing.clock import FakeClock
from kos.testing.fakeapi import FakeAPI
from kos.testing.severable import SeverableAPI

NAME = "kos-controller-manager"


class Candidate:
    def __init__(self, identity: str, api: FakeAPI, clock: FakeClock, others: list[Candidate], seed: int) -> None:
        self.identity = identity
        self.link = SeverableAPI(api)
        self.others = others
        self.started = 0
        self.stopped = 0
        self.metrics = LeaderMetrics(CollectorRegistry())
        self.elector = LeaderElector(
            cast(API, self.link), LeaderElectionConfig(identity=identity),
            on_started_leading=self._started, on_stopped_leading=self._stopped,
            metrics=self.metrics, clock=clock, rng=random.Random(seed),
        )  # fmt: skip
        self.task = asyncio.ensure_future(self.elector.run())

    async def _started(self) -> None:
        assert not any(o.elector.leading for o in self.others if o is not self), "two leaders at once"
        self.started += 1

    async def _stopped(self) -> None:
        self.stopped += 1

    @property
    def gauge(self) -> float:
        return self.metrics.master_status.labels(NAME)._value.get()


async def two(clock: FakeClock) -> tuple[FakeAPI, Candidate, Candidate]:
    api = FakeAPI()
    everyone: list[Candidate] = []
    a = Candidate("a", api, clock, everyone, 1)
    everyone.append(a)
    await clock.advance(0)  # a creates the Lease first
    b = Candidate("b", api, clock, everyone, 2)
    everyone.append(b)
    await clock.advance(0)
    return api, a, b


def holder(api: FakeAPI) -> str:
    lease = api.stored(Lease, LEADER_ELECTION_NAMESPACE, NAME)
    assert lease is not None
    return lease.spec.holder_identity or ""


async def finish(*cs: Candidate) -> None:
    for c in cs:
        c.elector.stop()
    await asyncio.gather(*(c.task for c in cs))


def test_the_config_refuses_client_gos_impossible_timings() -> None:
    with pytest.raises(ValueError, match="greater than the renew deadline"):
        LeaderElectionConfig(identity="x", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match=r"1\.2"):
        LeaderElectionConfig(identity="x", renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="identity"):
        LeaderElectionConfig(identity="")


async def test_one_of_two_candidates_leads_and_keeps_leading() -> None:
    clock = FakeClock(settle_turns=50)
    api, a, b = await two(clock)
    await clock.advance(60)  # many renewals
    assert (a.elector.leading, b.elector.leading) == (True, False)
    assert (a.gauge, b.gauge) == (1, 0)
    assert holder(api) == "a" and b.elector.leader == "a"
    lease = api.stored(Lease, LEADER_ELECTION_NAMESPACE, NAME)
    assert lease is not None and lease.spec.lease_transitions == 0 and lease.spec.lease_duration_seconds == 15
    assert lease.spec.renew_time != lease.spec.acquire_time  # renewed, acquired once
    await finish(a, b)


async def test_a_leader_that_cannot_renew_stops_and_the_other_takes_over_after_the_lease_duration() -> None:
    clock = FakeClock(settle_turns=50)
    api, a, b = await two(clock)
    await clock.advance(5)
    lease = api.stored(Lease, LEADER_ELECTION_NAMESPACE, NAME)
    assert lease is not None
    last_renewal = lease.spec.renew_time
    a.link.severed = True
    cut = clock.monotonic()
    # a's last renewal was written at most one retry period (2 s) before the cut; a renew round starts at most
    # one retry period after a success and gives up after the renew deadline (10 s): a stops by cut + 12
    await clock.advance(2 + 10 + 0.1)
    assert a.task.done() and a.elector.lost and a.stopped == 1 and a.gauge == 0
    assert not b.elector.leading and holder(api) == "a"
    # b measures 15 s from when it saw that last renewal, which was written no earlier than cut - 2
    await clock.advance(cut + 15 - 2 - 0.1 - clock.monotonic())
    assert not b.elector.leading
    # and b saw it within one jittered retry (2 s × 2.2) of the write; it takes over at its next retry after 15 s
    await clock.advance(cut + 2 * 2.2 + 15 + 2 * 2.2 + 0.1 - clock.monotonic())
    assert b.elector.leading and b.gauge == 1 and holder(api) == "b"
    took_over = api.stored(Lease, LEADER_ELECTION_NAMESPACE, NAME)
    assert took_over is not None and took_over.spec.lease_transitions == 1 and took_over.spec.renew_time != last_renewal
    await finish(a, b)


async def test_a_clean_stop_releases_the_lease_and_the_other_takes_over_at_its_next_retry() -> None:
    clock = FakeClock(settle_turns=50)
    api, a, b = await two(clock)
    await clock.advance(30)
    a.elector.stop()
    await clock.advance(0)
    await a.task
    assert not a.elector.lost and a.stopped == 1 and holder(api) == ""
    await clock.advance(2 * (1 + 1.2))  # one jittered retry, far less than the 15 s lease duration
    assert b.elector.leading and holder(api) == "b"
    await finish(a, b)


async def test_a_renew_conflict_is_retried_not_fatal() -> None:
    """A 409 on one renewal (another writer) is one failed attempt; the next retry renews within the deadline."""
    clock = FakeClock(settle_turns=50)
    api, a, b = await two(clock)
    api.fail("update", lambda: errors.conflict("leases", NAME, errors.STALE_OBJECT), kind="Lease", times=2)
    await clock.advance(20)
    assert a.elector.leading and not a.elector.lost and a.stopped == 0
    await finish(a, b)
