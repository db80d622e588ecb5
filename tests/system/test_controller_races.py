"""Two controller managers at once, and one killed with SIGKILL: the invariants hold (ARCHITECTURE §8, 1–2).

Real processes: one apiserver (with its create-time subnet check off, so that
conflicting subnets reach the validators), and controller managers started with
`kos controller-manager`. The test drives a randomized, seeded workload of
subnets (including conflicting ones) and attachments (in subnets small enough to
run full), created and deleted concurrently, then waits for quiescence and checks:
no address held twice in a VNI, every status address backed by a lock its NA
controls, no lock outliving its owner, no two validated conflicting subnets, and
every NA whose subnet is validated and not full has an address.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from kos.api.errors import AlreadyExists, NotFound, StatusError
from kos.api.meta import ObjectMeta
from kos.api.types import IPLock, NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.client.rest import Client
from kos.testing.process import APIServerProcess, KosProcess, free_port
from kos.verify.invariants import address_violations, readiness_violations, subnet_violations

pytestmark = pytest.mark.system

NAMESPACES = ["blue", "green"]
# stable subnets, created (and validated) first; small enough to run full
BASE = [(101, "10.1.0.0/28"), (102, "10.2.0.0/27"), (103, "10.3.0.0/28"), (104, "10.4.0.0/26")]
# churning subnets: some overlap the stable ones or each other, some land in the other namespace
SUBNET_SPECS = [
    (101, "10.1.0.0/29"), (101, "10.1.0.16/28"), (102, "10.2.0.0/27"), (102, "10.2.1.0/27"),
    (103, "10.3.0.8/29"), (103, "10.3.1.0/28"), (104, "10.4.0.32/27"), (104, "10.4.1.0/26"),
]  # fmt: skip


def start_cm(server: APIServerProcess, tmp: Path, name: str, seed: int) -> KosProcess:
    port = free_port()
    # --no-leader-elect: both managers active at once is the race under test (leader election would idle one)
    p = KosProcess(["controller-manager", "--server", server.url, "--metrics-listen", f"127.0.0.1:{port}",
                    "--insecure", "--seed", str(seed), "--log-level", "warning",
                    "--no-leader-elect"], tmp / f"{name}.log")  # fmt: skip
    p.wait_http(f"http://127.0.0.1:{port}/healthz")
    return p


async def churn(client: Client, rng: random.Random, seconds: float, prefix: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    live: list[tuple[str, str]] = []
    n = 0
    while loop.time() < deadline:
        r = rng.random()
        try:
            if r < 0.08:
                vni, block = rng.choice(SUBNET_SPECS)
                ns = rng.choice(NAMESPACES) if rng.random() < 0.2 else NAMESPACES[vni % 2]
                name = f"sn-{vni}-{rng.randrange(3)}"
                if rng.random() < 0.5:
                    await client.create(Subnet(metadata=ObjectMeta(name=name, namespace=ns),
                                               spec=SubnetSpec(vni=vni, ipv4=block)))  # fmt: skip
                else:
                    await client.delete(Subnet, ns, name)
            elif r < 0.7 or not live:
                vni, _ = rng.choice(BASE)
                ns = NAMESPACES[vni % 2]
                subnet = f"base-{vni}" if rng.random() < 0.8 else f"sn-{vni}-{rng.randrange(3)}"
                name = f"{prefix}-{n}"
                n += 1
                await client.create(NetworkAttachment(
                    metadata=ObjectMeta(name=name, namespace=ns),
                    spec=NetworkAttachmentSpec(node=f"node-{rng.randrange(5)}", subnet=subnet),
                ))  # fmt: skip
                live.append((ns, name))
            else:
                ns, name = live.pop(rng.randrange(len(live)))
                await client.delete(NetworkAttachment, ns, name)
        except (AlreadyExists, NotFound):
            pass
        await asyncio.sleep(rng.random() * 0.01)


async def sample_snapshots(client: Client, stop: asyncio.Event, seen: list[str]) -> int:
    """Check the always-true invariants on consistent snapshots (every kind listed at one revision) while churning.

    Every address in a status is backed by its NA's lock and no address is held twice *at every revision*, and two
    conflicting subnets are never validated together; only "no lock outlives its owner" waits for quiescence.
    """
    n = 0
    while not stop.is_set():
        _, rv = await client.list(Subnet, limit=1)
        try:
            subnets, _ = await client.list(Subnet, resource_version=rv, resource_version_match="Exact")
            nas, _ = await client.list(NetworkAttachment, resource_version=rv, resource_version_match="Exact")
            locks, _ = await client.list(IPLock, resource_version=rv, resource_version_match="Exact")
        except StatusError:  # 410 if the history moved on meanwhile: take another snapshot
            continue
        for v in address_violations(nas, locks, orphans=False) + subnet_violations(subnets):
            seen.append(f"at revision {rv}: {v}")
        n += 1
        await asyncio.sleep(0.05)
    return n


async def until_validated(client: Client, n: int) -> None:
    for _ in range(200):
        subnets, _ = await client.list(Subnet)
        if sum(1 for s in subnets if s.status.validated) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the stable subnets were not validated")


async def quiescent_violations(client: Client, timeout: float = 40.0) -> list[str]:
    """Wait until the system settles; the violations that remain then (none, if all is well)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    problems: list[str] = []
    while loop.time() < deadline:
        try:
            subnets, _ = await client.list(Subnet)
            nas, _ = await client.list(NetworkAttachment)
            locks, _ = await client.list(IPLock)
        except StatusError:
            await asyncio.sleep(0.2)
            continue
        unexamined = [s for s in subnets if not s.status.validated and not s.status.errors]
        problems = (
            address_violations(nas, locks)
            + subnet_violations(subnets)
            + readiness_violations(nas, subnets, locks, require_implemented=False)
            + [f"subnet {s.metadata.namespace}/{s.metadata.name} not examined" for s in unexamined]
        )
        if not problems:
            return []
        await asyncio.sleep(0.25)
    return problems


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_controller_managers_keep_the_invariants(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    server = APIServerProcess("memory://", tmp_path / "apiserver.log",
                              extra=["--no-check-subnets-conflicts", "--log-level", "warning"]).wait_ready()  # fmt: skip
    # the same seed: both pick the same addresses in the same order, so they collide as often as possible
    cms = [start_cm(server, tmp_path, f"cm{i}", seed) for i in (1, 2)]
    try:
        async with Client(server.url) as client:
            for vni, block in BASE:
                await client.create(Subnet(metadata=ObjectMeta(name=f"base-{vni}", namespace=NAMESPACES[vni % 2]),
                                           spec=SubnetSpec(vni=vni, ipv4=block)))  # fmt: skip
            await until_validated(client, len(BASE))
            stop = asyncio.Event()
            transient: list[str] = []
            sampler = asyncio.create_task(sample_snapshots(client, stop, transient))
            await asyncio.gather(*(churn(client, random.Random(rng.random()), 6.0, f"w{w}") for w in range(4)))
            stop.set()
            snapshots = await sampler
            assert transient == [], "\n".join(transient[:30])
            assert snapshots >= 10
            problems = await quiescent_violations(client)
            assert problems == [], "\n".join(problems[:30])
            nas, _ = await client.list(NetworkAttachment)
            assert sum(1 for n in nas if n.status.ipv4) > 20  # the workload really did assign addresses
    finally:
        for p in cms:
            p.stop()
        server.stop()


async def test_controller_manager_killed_mid_stream_recovers(tmp_path: Path) -> None:
    rng = random.Random(7)
    server = APIServerProcess("memory://", tmp_path / "apiserver.log",
                              extra=["--no-check-subnets-conflicts", "--log-level", "warning"]).wait_ready()  # fmt: skip
    cm = start_cm(server, tmp_path, "cm-a", 1)
    try:
        async with Client(server.url) as client:
            for vni, block in ((201, "10.20.0.0/24"), (202, "10.21.0.0/24")):
                await client.create(Subnet(metadata=ObjectMeta(name=f"sn-{vni}", namespace="blue"),
                                           spec=SubnetSpec(vni=vni, ipv4=block)))  # fmt: skip

            async def create(i: int) -> None:
                await client.create(NetworkAttachment(metadata=ObjectMeta(name=f"a{i}", namespace="blue"),
                                                      spec=NetworkAttachmentSpec(node="n", subnet=f"sn-{201 + i % 2}")))  # fmt: skip

            writer = asyncio.gather(*(create(i) for i in range(300)))
            await asyncio.sleep(0.3)
            cm.kill()  # SIGKILL in the middle of the stream of assignments
            await writer
            for i in rng.sample(range(300), 60):  # deletions while IPAM is down leave locks to clean up
                await client.delete(NetworkAttachment, "blue", f"a{i}")
            for i in range(300, 340):
                await create(i)
            cm = start_cm(server, tmp_path, "cm-b", 2)
            problems = await quiescent_violations(client)
            assert problems == [], "\n".join(problems[:30])
            nas, _ = await client.list(NetworkAttachment)
            assert len(nas) == 280 and all(n.status.ipv4 for n in nas)
            locks, _ = await client.list(IPLock)
            assert len(locks) == 280
    finally:
        cm.stop()
        server.stop()
