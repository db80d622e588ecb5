"""Leader election on a `Lease`, with client-go's semantics (k8s.io/client-go/tools/leaderelection).

Why: with several controller managers, one at a time should do the work, so that they do not race each other
for every address (they would stay correct — IPLocks make an assignment exclusive — but waste the apiserver's
writes on conflicts). Each candidate tries to acquire or renew the Lease `namespace/name` every retry period:

* it reads the Lease (creates it, holding it, if there is none);
* a record that changed since the last read is *observed* now, on the local monotonic clock; a Lease held by
  another whose record has not changed for `lease_duration` has expired (clock skew between hosts does not
  matter: only the local clock measures, as in client-go);
* it writes itself as holder with the resourceVersion it read, so of two candidates one wins and the other
  gets a 409 Conflict (optimistic concurrency) — `acquireTime` and `leaseTransitions` change only when the
  holder changes.

A leader renews every retry period; when no renewal has succeeded for `renew_deadline` it stops leading
(`on_stopped_leading`) — before its Lease can expire for the others, since renew_deadline < lease_duration.
On `stop()` a leader releases the Lease (client-go's ReleaseOnCancel: `holderIdentity` "" and a 1 s
duration), so a successor takes over at its next retry instead of after the lease duration. Waits between
attempts are jittered (client-go's JitterFactor 1.2) so candidates do not retry in step. All time is read from
the injected `Clock`, so tests drive it with `kos.testing.clock.FakeClock`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, Gauge

from kos.api import errors
from kos.api.meta import ObjectMeta
from kos.api.types import LEADER_ELECTION_NAMESPACE, Lease, LeaseSpec, micro_time
from kos.client.api import API
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

log = get_logger(__name__)
T = TypeVar("T")

JITTER_FACTOR: Final = 1.2
"""client-go's leaderelection JitterFactor: a wait of `retry_period` becomes up to 2.2 × it."""
DEFAULT_NAME: Final = "kos-controller-manager"


def default_identity() -> str:
    """`<hostname>_<uuid>`, as kube-controller-manager names its leader-election identity."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclasses.dataclass(frozen=True, slots=True)
class LeaderElectionConfig:
    """Where the Lease is and the timing, in seconds (client-go's defaults: 15, 10, 2).

    Raises ValueError unless lease_duration > renew_deadline > JITTER_FACTOR × retry_period > 0 (client-go's
    NewLeaderElector checks the same)."""

    name: str = DEFAULT_NAME
    namespace: str = LEADER_ELECTION_NAMESPACE
    identity: str = dataclasses.field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("the leader-election identity must not be empty")
        if self.retry_period <= 0:
            raise ValueError("the retry period must be greater than zero")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("the lease duration must be greater than the renew deadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(f"the renew deadline must be greater than {JITTER_FACTOR} × the retry period")


class LeaderMetrics:
    """`kos_leader_election_master_status{name}`: 1 while this process leads the Lease `name`, else 0 (client-go's
    `leader_election_master_status`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.master_status = Gauge(
            "kos_leader_election_master_status",
            "Whether this process leads the named lease (1) or not (0)",
            ["name"],
            registry=registry,
        )


class LeaderElector:
    """Campaign for the Lease of `config`; `run()` returns when leadership is lost or `stop()` is called.

    `on_started_leading()` is awaited once the Lease is acquired; `on_stopped_leading()` once leadership ends
    (lost, or stopped while leading); `on_new_leader(identity)` whenever another holder is observed. `api` is
    any `kos.client.api.API` (the REST client or `kos.testing.fakeapi`).
    """

    def __init__(
        self,
        api: API,
        config: LeaderElectionConfig,
        *,
        on_started_leading: Callable[[], Awaitable[None]],
        on_stopped_leading: Callable[[], Awaitable[None]],
        on_new_leader: Callable[[str], None] | None = None,
        metrics: LeaderMetrics | None = None,
        clock: Clock = REAL_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._gauge = metrics.master_status.labels(config.name) if metrics is not None else None
        if self._gauge is not None:
            self._gauge.set(0)
        self._observed_spec: LeaseSpec | None = None
        self._observed_at = 0.0
        self._reported_leader = ""
        self._stopping = asyncio.Event()
        self.leading = False
        self.lost = False
        """True once leadership was held and lost (not released by `stop`)."""

    @property
    def leader(self) -> str:
        """The holder last observed ("" when none)."""
        spec = self._observed_spec
        return (spec.holder_identity or "") if spec is not None else ""

    async def run(self) -> None:
        """Acquire, then renew until the renew deadline passes without a renewal or `stop()` is called."""
        try:
            if not await self._acquire():
                return
            self._set_leading(True)
            await self._on_started()
            await self._renew()
        finally:
            if self.leading:
                self._set_leading(False)
                await self._on_stopped()
                if self._stopping.is_set() and self.config.release_on_cancel:
                    await self._release()

    def stop(self) -> None:
        """Ask `run()` to return (releasing the Lease if leading and `release_on_cancel`)."""
        self._stopping.set()

    # --- the loops --------------------------------------------------------------------------------

    async def _acquire(self) -> bool:
        """Try every jittered retry period until the Lease is ours (True) or `stop()` (False)."""
        c = self.config
        log.info("attempting to acquire the leader lease", lease=f"{c.namespace}/{c.name}", identity=c.identity)
        while not self._stopping.is_set():
            if await self._bounded(self._try_acquire_or_renew(), c.renew_deadline):
                log.info("acquired the leader lease", lease=f"{c.namespace}/{c.name}", identity=c.identity)
                return True
            await self._wait(c.retry_period * (1 + self.rng.random() * JITTER_FACTOR))
        return False

    async def _renew(self) -> None:
        """Renew every retry period; return when no renewal succeeded within the renew deadline, or on `stop()`."""
        c = self.config
        while not self._stopping.is_set():
            deadline = self.clock.monotonic() + c.renew_deadline
            while True:
                left = deadline - self.clock.monotonic()
                if left > 0 and await self._bounded(self._try_acquire_or_renew(), left):
                    break
                if self._stopping.is_set():
                    return
                if self.clock.monotonic() >= deadline:
                    self.lost = True
                    log.error("failed to renew the leader lease within the renew deadline: leadership lost",
                              lease=f"{c.namespace}/{c.name}", identity=c.identity)  # fmt: skip
                    return
                await self._wait(min(c.retry_period, deadline - self.clock.monotonic()))
            await self._wait(c.retry_period)

    # --- one attempt ---------------------------------------------------------------------------------

    async def _try_acquire_or_renew(self) -> bool:
        """client-go's tryAcquireOrRenew: True when this candidate holds the Lease after the call."""
        c = self.config
        now = micro_time(self.clock.now())
        mine = LeaseSpec(holder_identity=c.identity, lease_duration_seconds=_seconds(c.lease_duration),
                         acquire_time=now, renew_time=now, lease_transitions=0)  # fmt: skip
        try:
            old = await self.api.get(Lease, c.namespace, c.name)
        except errors.NotFound:
            try:
                created = await self.api.create(Lease(metadata=ObjectMeta(name=c.name, namespace=c.namespace),
                                                      spec=mine))  # fmt: skip
            except errors.StatusError as e:
                log.info("could not create the leader lease", error=str(e))
                return False
            self._observe(created)
            return True
        except errors.StatusError as e:
            log.info("could not read the leader lease", error=str(e))
            return False
        self._observe(old)
        spec = old.spec
        holder = spec.holder_identity or ""
        if holder and holder != c.identity and self._observed_at + c.lease_duration > self.clock.monotonic():
            return False  # held by another, not expired
        if holder == c.identity:
            mine = LeaseSpec(holder_identity=c.identity, lease_duration_seconds=mine.lease_duration_seconds,
                             acquire_time=spec.acquire_time, renew_time=now,
                             lease_transitions=spec.lease_transitions)  # fmt: skip
        else:
            mine = LeaseSpec(holder_identity=c.identity, lease_duration_seconds=mine.lease_duration_seconds,
                             acquire_time=now, renew_time=now,
                             lease_transitions=(spec.lease_transitions or 0) + 1)  # fmt: skip
        try:
            updated = await self.api.update(Lease(metadata=old.metadata, spec=mine))
        except errors.StatusError as e:  # a 409: another candidate wrote first
            log.info("could not update the leader lease", error=str(e))
            return False
        self._observe(updated)
        return True

    async def _release(self) -> None:
        """client-go's release: if still the holder, write holderIdentity "" so a successor need not wait."""
        c = self.config
        try:
            old = await self._bounded_value(self.api.get(Lease, c.namespace, c.name), c.renew_deadline)
            if old is None or old.spec.holder_identity != c.identity:
                return
            now = micro_time(self.clock.now())
            spec = LeaseSpec(holder_identity="", lease_duration_seconds=1, acquire_time=now, renew_time=now,
                             lease_transitions=old.spec.lease_transitions)  # fmt: skip
            await self._bounded_value(self.api.update(Lease(metadata=old.metadata, spec=spec)), c.renew_deadline)
            log.info("released the leader lease", lease=f"{c.namespace}/{c.name}", identity=c.identity)
        except errors.StatusError as e:
            log.warning("could not release the leader lease", error=str(e))

    def _observe(self, lease: Lease) -> None:
        if self._observed_spec != lease.spec:
            self._observed_spec = lease.spec
            self._observed_at = self.clock.monotonic()
        holder = lease.spec.holder_identity or ""
        if holder != self._reported_leader:
            self._reported_leader = holder
            if holder and holder != self.config.identity:
                log.info("new leader observed", lease=f"{self.config.namespace}/{self.config.name}", leader=holder)
                if self._on_new_leader is not None:
                    self._on_new_leader(holder)

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        if self._gauge is not None:
            self._gauge.set(1 if leading else 0)

    # --- time ------------------------------------------------------------------------------------------

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds` on the clock, or less if `stop()` is called."""
        if self._stopping.is_set():
            return
        stopping = asyncio.ensure_future(self._stopping.wait())
        sleep = asyncio.ensure_future(self.clock.sleep(max(seconds, 0.0)))
        try:
            await asyncio.wait((stopping, sleep), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (stopping, sleep):
                t.cancel()

    async def _bounded(self, call: Coroutine[Any, Any, bool], seconds: float) -> bool:
        """`call`'s result, or False if it takes longer than `seconds` on the clock (it is then cancelled)."""
        return bool(await self._bounded_value(call, seconds))

    async def _bounded_value(self, call: Coroutine[Any, Any, T], seconds: float) -> T | None:
        task = asyncio.ensure_future(call)
        timer = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.info("a leader-election call timed out", seconds=seconds)
            return None
        return task.result()


def _seconds(duration: float) -> int:
    return max(1, round(duration))
