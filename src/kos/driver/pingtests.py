"""Ping tests (reference §7.4): which NA a new NA pings, and the commands it runs after create and delete.

Each VN is a connectivity domain: a new NA pings the latest NA of its VN that passed its own test
(a "full" test, with probability `--test-fraction`); without one it only sets its guest up (a "half"
test). When no NA has passed yet but some are being tested, the new NA waits for them (up to
`--pending-wait`), and that wait shifts everyone's schedule, as in the original driver
(`extra_delay`).
"""

from __future__ import annotations

import asyncio
import random

from kos.driver import distribution
from kos.driver.records import Record
from kos.driver.settings import DriverSettings
from kos.util.clock import Clock

TEST_BY_PING = "TestByPing"
REMOVE_NETNS = "RemoveNetNS"


class Domain:
    """A VN's connectivity domain for ping tests: the latest NA that passed its test, and those still pending."""

    def __init__(self) -> None:
        self.latest: Record | None = None
        self.pending: set[str] = set()
        self.changed = asyncio.Event()

    def tested(self, r: Record, ok: bool) -> None:
        self.pending.discard(r.name)
        if ok:
            self.latest = r
        elif self.latest is r:
            self.latest = None
        self.changed.set()

    def closed(self, r: Record) -> None:
        self.pending.discard(r.name)
        if self.latest is r:
            self.latest = None
        self.changed.set()


class PingTests:
    """The domains of a plan's VNs and the test commands of each new NA."""

    def __init__(
        self, s: DriverSettings, plan: distribution.Plan, run_id: str, rng: random.Random, clock: Clock
    ) -> None:
        self.s = s
        self.run_id = run_id
        self.rng = rng
        self.clock = clock
        self.domains: dict[int, Domain] = {n.vni: Domain() for n in plan.networks}
        self.prefix_of = {sp.name: sp.cidr.split("/")[1] for n in plan.networks for sp in n.subnets}
        """Each subnet's prefix length, as the guest's address needs it."""
        self.netns_counter = 0
        self.extra_delay = 0.0
        """Seconds spent waiting for peers; the schedule loop shifts every later operation by it."""

    async def commands(self, r: Record) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Post-create and post-delete commands for `r`'s test, or none (`--test-fraction 0`)."""
        s = self.s
        if s.test_fraction <= 0:
            return (), ()
        dom = self.domains[r.vni]
        peer = dom.latest
        if peer is None and dom.pending:
            waited = self.clock.monotonic()
            await self._wait_for_peer(dom, waited + s.pending_wait)
            self.extra_delay += self.clock.monotonic() - waited
            peer = dom.latest
        self.netns_counter += 1
        netns = f"{self.run_id}-{self.netns_counter}"
        script = f"{s.test_script_dir}/{TEST_BY_PING}"
        guest = f"${{ipv4}}/{self.prefix_of[r.subnet]}"
        create: tuple[str, ...]
        if peer is not None and peer.ipv4 and self.rng.random() < s.test_fraction:
            r.full_test = True
            create = (script, "${ifname}", netns, guest, peer.ipv4, str(s.ping_count), peer.name)
        else:
            create = (script, "${ifname}", netns, guest)
        dom.pending.add(r.name)
        return create, (f"{s.test_script_dir}/{REMOVE_NETNS}", netns)

    async def _wait_for_peer(self, dom: Domain, deadline: float) -> None:
        """Until a peer passed, none is pending, or the clock reaches `deadline` (monotonic seconds)."""
        while dom.latest is None and dom.pending and self.clock.monotonic() < deadline:
            dom.changed.clear()
            timer = self.clock.call_later(max(0.0, deadline - self.clock.monotonic()), dom.changed.set)
            try:
                await dom.changed.wait()
            finally:
                timer.cancel()
