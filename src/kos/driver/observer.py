"""Watch-based readiness observation: when each of the run's NAs was addressed, ready, broken or tested.

An informer on the run's NAs calls `observe` with every added or updated NA; the first notification
that shows a stage stamps it with the driver's wall clock (and with the server's write time of the
section that made it, from `extendedMetadata`). `close` ends an NA's observation when its slot's
delete is issued (or the run ends) and puts its latencies into the histograms. A break or a failed
ping test sets `stopped` when the settings say to stop on it; the schedule loop reads it.
"""

from __future__ import annotations

import math

from kos.api.types import SECTION_ADDRESS, SECTION_IMPL, SECTION_SPEC, NetworkAttachment
from kos.driver.metrics import DriverMetrics
from kos.driver.pingtests import Domain
from kos.driver.records import Record
from kos.driver.settings import DriverSettings
from kos.util.clock import Clock
from kos.util.log import get_logger

log = get_logger(__name__)

OUT_OF_ADDRESSES = "run out of IPs"
"""An IPAM error that is waiting, not breakage: the NA gets an address once one is freed."""


def _stamp(na: NetworkAttachment, section: str) -> float:
    t = na.extended_metadata.write_time(section)
    return t.timestamp() if t else math.nan


class Observer:
    """The run's `Record`s, by name, and the stage times the watch shows for them."""

    def __init__(self, s: DriverSettings, metrics: DriverMetrics, domains: dict[int, Domain], clock: Clock) -> None:
        self.s = s
        self.metrics = metrics
        self.domains = domains
        self.clock = clock
        self.records: list[Record] = []
        self.by_name: dict[str, Record] = {}
        self.stopped = ""
        """Why the run must stop early, or ""."""

    def track(self, r: Record) -> None:
        """Start observing `r` (just before its create call)."""
        self.records.append(r)
        self.by_name[r.name] = r

    def observe(self, na: NetworkAttachment) -> None:
        """Stamp the stages `na` shows for the first time (an informer's add and update handler)."""
        r = self.by_name.get(na.metadata.name)
        if r is None or r.closed:
            return  # not ours, or a tardy notification about an NA whose slot moved on
        now = self.clock.now().timestamp()
        st = na.status
        if math.isnan(r.server_spec):
            r.server_spec = _stamp(na, SECTION_SPEC)
        if st.ipv4 and math.isnan(r.addressed):
            r.addressed = now
            r.ipv4 = st.ipv4
            r.contention = st.address_contention
            r.server_address = _stamp(na, SECTION_ADDRESS)
        ready = na.is_ready()
        if ready and math.isnan(r.ready):
            r.ready = now
            r.server_impl = _stamp(na, SECTION_IMPL)
        if not ready and math.isnan(r.broken) and math.isnan(r.ready):
            self._check_broken(r, na, now)
        rep = st.post_create_exec_report
        if rep is not None and not math.isnan(r.ready) and math.isnan(r.tested):
            r.tested = now
            r.test_exit = rep.exit_status
            self.domains[r.vni].tested(r, rep.exit_status == 0)
            if rep.exit_status != 0 and self.s.stop_on_ping_fail:
                self.stopped = f"{r.name}'s test exited {rep.exit_status}: {rep.std_err.strip()[-200:]}"

    def _check_broken(self, r: Record, na: NetworkAttachment, now: float) -> None:
        errs = na.status.errors
        ipam = [e for e in errs.ipam if OUT_OF_ADDRESSES not in e]
        if ipam or errs.host:
            r.broken = now
            self.domains[r.vni].closed(r)
            if self.s.stop_on_break:
                self.stopped = f"{r.name} broke: {'; '.join([*ipam, *errs.host])}"

    def close(self, r: Record) -> None:
        """End `r`'s observation (its delete is issued, or the run ends) and record its histograms; idempotent."""
        if r.closed:
            return
        r.closed = True
        if r.failed:
            return
        self.metrics.observe_closed(r)
        if math.isnan(r.addressed):
            log.info("NA never got an address", name=r.name)
        elif math.isnan(r.ready):
            log.info("NA never became ready", name=r.name)
        self.domains[r.vni].closed(r)

    def close_all(self) -> None:
        for r in self.records:
            self.close(r)

    def settled(self) -> bool:
        """Whether every open NA is ready or broken (nothing more is awaited from the watch but tests)."""
        return all(r.closed or not math.isnan(r.ready) or not math.isnan(r.broken) for r in self.records)
