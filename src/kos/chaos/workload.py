"""The workload of a chaos run: NetworkAttachments created and deleted at a steady rate, every call recorded.

A fault matters by what it does to users: a write refused, a write that hangs, an acknowledged write later
missing. So the workload is what users do — a few Subnets, then NAs created and deleted across namespaces and
VNIs at `rate` writes per second with at most `concurrency` calls in flight, with some gets and lists — and
every call goes through `History.call` (kos.chaos.history), which records its start, end and outcome. The
checker (kos.chaos.checker) and the report (kos.chaos.report) judge the record afterwards.

It keeps going through faults: a failed call is recorded, never fatal. A create whose outcome is `unknown`
(a timeout, a broken connection, a 5xx: it may have been applied) is never sent again as if it had failed:
the next create takes a new name, and the name that may exist is left alone (the checker accepts either
answer for it). A delete is sent again later after any failure — deleting twice is harmless, and a 404 then
says an earlier attempt was applied.

Names are unique per run (`tag`, chosen by the caller), so a run never meets objects of an earlier one; the
choices (create or delete, which NA, which node, which read) come from a seeded `random.Random`, so a run's
sequence of decisions repeats with its seed — though which calls fail depends on timing, as in any chaos test.

Besides the calls, the workload follows every NA (kos.client.reflector, as the controllers do) and notes when
each of its NAs is first ready: the controller manager's loss stalls readiness, not writes, and the report
shows both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from typing import Any

from kos.api.errors import AlreadyExists, NotFound, StatusError
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.chaos.history import History
from kos.client.failover import FailoverTransport
from kos.client.indexer import Indexer
from kos.client.reflector import Reflector
from kos.client.rest import Client
from kos.util.clock import Clock

__all__ = ["NA", "SN", "Workload", "WorkloadSettings"]

NA = "networkattachments"
SN = "subnets"
SETUP_TIMEOUT = 120.0
"""Seconds the Subnets have to be created (through whatever the cluster is doing)."""
RETRY = 0.5
"""Seconds between attempts at a Subnet, and between looks while waiting for readiness."""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkloadSettings:
    """`rate`: writes (creates + deletes) per second; `concurrency`: calls in flight at most; `namespaces`
    and `subnets` per namespace (each Subnet its own VNI); `live`: how many NAs the workload keeps alive
    (it creates below that, deletes above it, and mixes around it); one read (a get or a list) per
    `read_every` writes; `timeout`: seconds one call may take."""

    rate: float = 10.0
    concurrency: int = 8
    namespaces: int = 2
    subnets: int = 2
    live: int = 30
    read_every: int = 4
    timeout: float = 10.0


def _server(client: Client) -> str:
    """The apiserver a call's answer most likely came from: the failover transport's current server when the
    answer arrived (a concurrent call's failure may have moved it on since; the record is a hint)."""
    t = client.transport
    return t.server if isinstance(t, FailoverTransport) else client.server


class Workload:
    """Drives `client` (the admin's, failing over across the apiservers) and records into `history`.

    `nodes` are the node names NAs go to; `tag` prefixes every name (unique per run); `vni_base` is the
    first VNI of its Subnets. Times are on `clock` (the pacing) and `history.now()` (the records)."""

    def __init__(
        self, client: Client, history: History, rng: random.Random, nodes: list[str], tag: str, vni_base: int,
        settings: WorkloadSettings, clock: Clock,
    ) -> None:  # fmt: skip
        self.client = client
        self.history = history
        self.rng = rng
        self.nodes = nodes
        self.tag = tag
        self.s = settings
        self.clock = clock
        self.namespaces = [f"chaos-{i}" for i in range(settings.namespaces)]
        self.subnets = [
            Subnet(metadata=ObjectMeta(name=f"{tag}-sn{j}", namespace=ns),
                   spec=SubnetSpec(vni=vni_base + i * settings.subnets + j, ipv4=f"10.{j}.0.0/20"))
            for i, ns in enumerate(self.namespaces) for j in range(settings.subnets)
        ]  # fmt: skip
        self.live: list[tuple[str, str]] = []
        """(namespace, name) of the NAs acknowledged created and not (yet) acknowledged deleted."""
        self.unknown: set[tuple[str, str]] = set()
        """NAs whose create's outcome is unknown: they may exist; the workload leaves them alone."""
        self.ready: dict[tuple[str, str], float] = {}
        """When (history time) each of this run's NAs was first seen ready."""
        self.writes = 0
        self._count = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # --- setup ---------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the Subnets, each until acknowledged (or found there: an unknown earlier attempt applied).
        Raises TimeoutError if they cannot all be made within SETUP_TIMEOUT."""
        deadline = self.clock.monotonic() + SETUP_TIMEOUT
        for sn in self.subnets:
            m = sn.metadata
            while True:
                try:
                    async with self.history.call("create", SN, m.namespace, m.name) as scope:
                        got = await self.client.create(sn)
                        scope.ok(got.metadata.resource_version, 201, _server(self.client))
                    break
                except AlreadyExists:
                    break
                except StatusError:
                    if self.clock.monotonic() >= deadline:
                        raise TimeoutError(f"cannot create Subnet {m.namespace}/{m.name}") from None
                    await self.clock.sleep(RETRY)

    # --- the steady workload -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Issue writes at `rate` (and reads among them) until `stop` is set, then wait for the calls in flight."""
        slots = asyncio.Semaphore(self.s.concurrency)
        interval = 1.0 / self.s.rate
        due = self.clock.monotonic()
        try:
            while not stop.is_set():
                now = self.clock.monotonic()
                if due > now:
                    await self.clock.sleep(due - now)
                due = max(due + interval, self.clock.monotonic() - interval)  # late: do not burst to catch up
                await slots.acquire()
                if stop.is_set():
                    slots.release()
                    break
                self._count += 1
                op = self._write() if self._count % (self.s.read_every + 1) else self._read()
                task = asyncio.create_task(op)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(lambda _: slots.release())
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _write(self) -> Any:
        n = len(self.live)
        create = n < self.s.live // 2 or (n < 2 * self.s.live and self.rng.random() < 0.5 + (self.s.live - n) / 100)
        if create or not self.live:
            return self._create()
        i = self.rng.randrange(len(self.live))
        self.live[i], self.live[-1] = self.live[-1], self.live[i]
        return self._delete(self.live.pop())

    async def _create(self) -> None:
        ns = self.rng.choice(self.namespaces)
        subnet = self.rng.choice([s for s in self.subnets if s.metadata.namespace == ns])
        self.writes += 1
        name = f"{self.tag}-{self.writes:06d}"
        na = NetworkAttachment(metadata=ObjectMeta(name=name, namespace=ns),
                               spec=NetworkAttachmentSpec(node=self.rng.choice(self.nodes), subnet=subnet.metadata.name))  # fmt: skip
        key = (ns, name)
        try:
            async with self.history.call("create", NA, ns, name) as scope:
                got = await self.client.create(na)
                scope.ok(got.metadata.resource_version, 201, _server(self.client))
        except StatusError as e:
            if e.code >= 500:  # kos.chaos.history.classify: it may have been applied
                self.unknown.add(key)
            return
        self.live.append(key)

    async def _delete(self, key: tuple[str, str]) -> None:
        ns, name = key
        self.writes += 1
        try:
            async with self.history.call("delete", NA, ns, name) as scope:
                got = await self.client.delete(NetworkAttachment, ns, name)
                scope.ok(got.metadata.resource_version, 200, _server(self.client))
        except NotFound:
            return  # an earlier attempt whose answer was lost did delete it
        except StatusError:
            self.live.append(key)  # try again later
            return

    async def _read(self) -> None:
        with contextlib.suppress(StatusError):
            if self.live and self.rng.random() < 0.5:
                ns, name = self.rng.choice(self.live)
                async with self.history.call("get", NA, ns, name) as scope:
                    got = await self.client.get(NetworkAttachment, ns, name)
                    scope.ok(got.metadata.resource_version, 200, _server(self.client))
            else:
                ns = self.rng.choice(self.namespaces)
                async with self.history.call("list", NA, ns, "") as scope:
                    _, rv = await self.client.list(NetworkAttachment, ns)
                    scope.ok(rv, 200, _server(self.client))

    # --- readiness -----------------------------------------------------------------------------

    async def follow_readiness(self, stop: asyncio.Event) -> None:
        """Note when each of this run's NAs is first ready (kos.client.reflector over every NA) until `stop`."""
        prefix = self.tag + "-"

        def on_event(_type: str, _old: Any, new: Any) -> None:
            if new is None or not new.metadata.name.startswith(prefix):
                return
            key = (new.metadata.namespace, new.metadata.name)
            if key not in self.ready and new.is_ready():
                self.ready[key] = self.history.now()

        reflector: Reflector[NetworkAttachment] = Reflector(
            self.client, NetworkAttachment, Indexer(), on_event, name="chaos-readiness", watch_timeout=(30, 60)
        )
        task = asyncio.create_task(reflector.run(), name="chaos-readiness")
        try:
            await stop.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
