"""The faults a chaos run injects into a `kos up --ha` cluster, each healed and recorded as a history `Fault`.

Each fault is what an operator of a real deployment sees go wrong (security-ha-deploy.md §6):

    etcd-leader-kill          SIGKILL of the etcd leader: the members elect another (a few election timeouts)
    etcd-follower-kill        SIGKILL of an etcd follower: quorum holds; the apiservers' watches on it move
    apiserver-kill            SIGKILL of the apiserver the workload's client uses now: it must fail over to
                              the other (kos.client.failover)
    apiserver-stop            SIGSTOP of the apiserver the workload's client uses now for STOP_SECONDS, then
                              SIGCONT: a hung peer that keeps its connections open and answers nothing (no RST)
    controller-manager-kill   SIGKILL of the active controller manager (the Lease holder): the other takes
                              the Lease once it expires (15 s)
    agents-kill               SIGKILL of the simulated nodes' process(es) (role simnodes, and agents)
    quorum-loss               SIGSTOP of two of the three etcd members for QUORUM_SECONDS, then SIGCONT: no
                              write can commit; the apiservers must say so (503) and recover after

A kill is healed when `kos up` has restarted the process (a new pid in cluster.json, seen running); a stop
when the SIGCONT is sent. A fault always heals what it did, even when the run is cancelled halfway (a stopped
process is continued in a `finally`), so a chaos run never leaves the cluster frozen.
"""

from __future__ import annotations

import dataclasses
import random
import signal
from collections.abc import Awaitable, Callable, Sequence

from kos.chaos.cluster import ClusterError, RunningCluster
from kos.chaos.history import Fault, History
from kos.client.failover import FailoverTransport
from kos.client.rest import Client
from kos.util.clock import Clock

__all__ = [
    "FAULTS", "QUORUM_SECONDS", "RESTART_TIMEOUT", "STOP_SECONDS", "FaultContext", "FaultError", "inject",
    "order", "parse_faults",
]  # fmt: skip

FAULTS: tuple[str, ...] = (
    "etcd-leader-kill", "etcd-follower-kill", "apiserver-kill", "apiserver-stop", "controller-manager-kill",
    "agents-kill", "quorum-loss",
)  # fmt: skip
"""Every fault, by name."""
STOP_SECONDS = 20.0
"""How long apiserver-stop keeps one apiserver stopped (a hung peer; issue 13)."""
QUORUM_SECONDS = 10.0
"""How long quorum-loss keeps two of the three etcd members stopped (issue 13)."""
RESTART_TIMEOUT = 90.0
"""Seconds to wait for `kos up` to restart a killed process before the fault is reported not healed."""
POLL = 0.1
"""Seconds between looks at cluster.json / the cluster while waiting."""
LEADER_TIMEOUT = 30.0
"""Seconds to wait for an etcd leader (or the Lease holder) to pick as a target."""


class FaultError(Exception):
    """A fault could not be injected (no target found in time) or was not healed (not restarted in time)."""


@dataclasses.dataclass
class FaultContext:
    """What a fault works with: the cluster, the history it records into, an admin client (to read the Lease),
    the clock its waits run on and the seeded `rng` that picks targets."""

    cluster: RunningCluster
    history: History
    client: Client
    clock: Clock
    rng: random.Random
    stop_seconds: float = STOP_SECONDS
    quorum_seconds: float = QUORUM_SECONDS


def parse_faults(value: str) -> list[str]:
    """The faults of a comma-separated list ("all" or "" for every one), in the order given, each once.
    Raises ValueError naming an unknown fault."""
    if value.strip() in ("", "all"):
        return list(FAULTS)
    out: list[str] = []
    for name in (v.strip() for v in value.split(",")):
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}: choose from {', '.join(FAULTS)}")
        if name not in out:
            out.append(name)
    return out


def order(faults: Sequence[str], rng: random.Random) -> list[str]:
    """`faults` in the order a run injects them: shuffled by `rng` (a seeded run repeats it)."""
    out = list(faults)
    rng.shuffle(out)
    return out


async def inject(name: str, ctx: FaultContext) -> Fault:
    """Inject fault `name`, wait until it is healed, record it in the history and return it. Raises
    FaultError if no target is found or the target is not back within RESTART_TIMEOUT (the record is still
    added, with `healed` 0.0 and the reason in `note`)."""
    return await _KINDS[name](ctx)


async def _until(ctx: FaultContext, what: str, timeout: float, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = ctx.clock.monotonic() + timeout
    while not await check():
        if ctx.clock.monotonic() >= deadline:
            raise FaultError(f"{what} not within {timeout:.0f}s")
        await ctx.clock.sleep(POLL)


async def _kill(ctx: FaultContext, kind: str, targets: list[str], note: str = "") -> Fault:
    """SIGKILL each of `targets`, then wait until `kos up` has restarted every one."""
    fault = Fault(name=kind, targets=targets, start=ctx.history.now(), note=note)
    pids: dict[str, int | None] = {}
    try:
        for t in targets:
            try:
                pids[t] = ctx.cluster.signal(t, signal.SIGKILL)
            except (ClusterError, ProcessLookupError):
                pids[t] = None  # already gone: waiting for its restart is the same
        fault.start = ctx.history.now()

        async def back() -> bool:
            return all(ctx.cluster.running_again(t, pids[t]) for t in targets)

        await _until(ctx, f"{', '.join(targets)} running again", RESTART_TIMEOUT, back)
        fault.healed = ctx.history.now()
    except (FaultError, ClusterError) as e:
        fault.note = f"{fault.note}; not healed: {e}".lstrip("; ")
        raise FaultError(f"{kind}: {e}") from None
    finally:
        ctx.history.add(fault)
    return fault


async def _stop(ctx: FaultContext, kind: str, targets: list[str], seconds: float, note: str = "") -> Fault:
    """SIGSTOP each of `targets` for `seconds`, then SIGCONT them (always, even when cancelled)."""
    fault = Fault(name=kind, targets=targets, start=ctx.history.now(), note=note)
    stopped: list[str] = []
    try:
        for t in targets:
            ctx.cluster.signal(t, signal.SIGSTOP)
            stopped.append(t)
        fault.start = ctx.history.now()
        await ctx.clock.sleep(seconds)
    finally:
        for t in stopped:
            try:
                ctx.cluster.signal(t, signal.SIGCONT)
            except (ClusterError, ProcessLookupError):  # pragma: no cover - it died while stopped
                fault.note = f"{fault.note}; {t} gone while stopped".lstrip("; ")
        fault.healed = ctx.history.now() if len(stopped) == len(targets) else 0.0
        ctx.history.add(fault)
    return fault


async def _etcd_leader(ctx: FaultContext) -> str:
    found: list[str] = []

    async def leader() -> bool:
        m = await ctx.cluster.etcd_leader()
        if m is not None:
            found.append(m.name)
        return m is not None

    await _until(ctx, "an etcd leader", LEADER_TIMEOUT, leader)
    return found[-1]


async def etcd_leader_kill(ctx: FaultContext) -> Fault:
    leader = await _etcd_leader(ctx)
    return await _kill(ctx, "etcd-leader-kill", [leader])


async def etcd_follower_kill(ctx: FaultContext) -> Fault:
    leader = await _etcd_leader(ctx)
    followers = sorted(c.name for c in ctx.cluster.role("etcd") if c.name != leader)
    return await _kill(ctx, "etcd-follower-kill", [ctx.rng.choice(followers)], note=f"leader {leader}")


def _apiserver_in_use(ctx: FaultContext) -> str:
    """The apiserver the workload's client sends its calls to now (its failover transport's current server):
    losing it is what makes clients fail over. Another one picked by `rng` if the client has a single server."""
    apiservers = sorted(ctx.cluster.role("apiserver"), key=lambda c: c.name)
    t = ctx.client.transport
    if isinstance(t, FailoverTransport):
        for c in apiservers:
            if c.url == t.server:
                return c.name
    return ctx.rng.choice(apiservers).name


async def apiserver_kill(ctx: FaultContext) -> Fault:
    return await _kill(ctx, "apiserver-kill", [_apiserver_in_use(ctx)])


async def apiserver_stop(ctx: FaultContext) -> Fault:
    return await _stop(ctx, "apiserver-stop", [_apiserver_in_use(ctx)], ctx.stop_seconds)


async def controller_manager_kill(ctx: FaultContext) -> Fault:
    names = {c.name for c in ctx.cluster.role("controller-manager")}
    found: list[str] = []

    async def holder() -> bool:
        h = await ctx.cluster.active_controller_manager(ctx.client)
        if h in names:
            found.append(h)
            return True
        return False

    await _until(ctx, "a controller manager holding the Lease", LEADER_TIMEOUT, holder)
    return await _kill(ctx, "controller-manager-kill", [found[-1]])


async def agents_kill(ctx: FaultContext) -> Fault:
    names = sorted(c.name for c in (*ctx.cluster.role("simnodes"), *ctx.cluster.role("agent")))
    return await _kill(ctx, "agents-kill", names)


async def quorum_loss(ctx: FaultContext) -> Fault:
    names = sorted(c.name for c in ctx.cluster.role("etcd"))
    chosen = sorted(ctx.rng.sample(names, len(names) // 2 + 1))  # a majority: 2 of 3
    return await _stop(ctx, "quorum-loss", chosen, ctx.quorum_seconds)


_KINDS: dict[str, Callable[[FaultContext], Awaitable[Fault]]] = {
    "etcd-leader-kill": etcd_leader_kill,
    "etcd-follower-kill": etcd_follower_kill,
    "apiserver-kill": apiserver_kill,
    "apiserver-stop": apiserver_stop,
    "controller-manager-kill": controller_manager_kill,
    "agents-kill": agents_kill,
    "quorum-loss": quorum_loss,
}
assert set(_KINDS) == set(FAULTS)
