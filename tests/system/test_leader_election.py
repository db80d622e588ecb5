"""Two real controller managers against one apiserver: one leads and runs IPAM, the other waits and takes over.

Both run with client-go's default timings (lease 15 s, renew deadline 10 s, retry 2 s). The leader is seen
three ways: the Lease's holder, each process's `kos_leader_election_master_status{name}` gauge, and its IPAM
metrics (the follower never started a worker nor wrote a lock). After SIGKILL of the leader — no release —
the other takes over once the lease has gone unrenewed for its duration and addresses new attachments. The
take-over is bounded by the wait's timeout (about 20 s of real time), and the time it took is printed.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import LEADER_ELECTION_NAMESPACE, Lease, NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.client.rest import Client
from kos.testing.process import APIServerProcess, KosProcess, free_port
from kos.testing.wait import eventually

pytestmark = pytest.mark.system

NS = "leader"
LEASE = "kos-controller-manager"
TAKEOVER_BOUND = 15 + 2 * 2 * 2.2 + 10
"""Lease duration, up to two jittered retries (one to observe the last renewal, one to take over), and slack."""


class Manager:
    def __init__(self, server: APIServerProcess, tmp: Path, identity: str) -> None:
        self.identity = identity
        self.port = free_port()
        self.proc = KosProcess(["controller-manager", "--server", server.url, "--insecure",
                                "--metrics-listen", f"127.0.0.1:{self.port}", "--ipam-workers", "2",
                                "--subnet-validator-workers", "1", "--leader-elect-identity", identity,
                                "--log-level", "info"], tmp / f"{identity}.log")  # fmt: skip
        self.proc.wait_http(f"http://127.0.0.1:{self.port}/healthz")

    def metric(self, name: str, labels: str = "") -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    def leads(self) -> bool:
        return self.metric("kos_leader_election_master_status", f'{{name="{LEASE}"}}') == 1.0

    def locks_created(self) -> float:
        return self.metric("kos_ipam_ip_lock_latency_seconds_count", '{err="ok",op="create"}')

    def ipam_workers(self) -> float:
        return self.metric("kos_ipam_worker_count_total")


def na(name: str) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS),
                             spec=NetworkAttachmentSpec(node="node-1", subnet="net"))  # fmt: skip


async def addressed(client: Client, names: list[str]) -> bool:
    nas, _ = await client.list(NetworkAttachment, NS)
    return set(names) <= {n.metadata.name for n in nas if n.status.ipv4}


async def holder(client: Client) -> str:
    lease = await client.get(Lease, LEADER_ELECTION_NAMESPACE, LEASE)
    return lease.spec.holder_identity or ""


async def test_one_manager_leads_and_the_other_takes_over_after_sigkill(tmp_path: Path) -> None:
    server = APIServerProcess("memory://", tmp_path / "apiserver.log", extra=["--log-level", "warning"]).wait_ready()
    managers: list[Manager] = []
    try:
        a = Manager(server, tmp_path, "cm-a")
        managers.append(a)
        await eventually(a.leads, timeout=10, interval=0.1)
        b = Manager(server, tmp_path, "cm-b")
        managers.append(b)
        async with Client(server.url) as client:
            assert await holder(client) == "cm-a"
            await client.create(Subnet(metadata=ObjectMeta(name="net", namespace=NS),
                                       spec=SubnetSpec(vni=77, ipv4="10.77.0.0/24")))  # fmt: skip
            first = [f"a{i}" for i in range(10)]
            for n in first:
                await client.create(na(n))
            await eventually(lambda: addressed(client, first), timeout=30, interval=0.1)
            # only the leader runs IPAM: b is a candidate with no worker started and no lock written
            assert a.leads() and not b.leads()
            assert a.locks_created() >= len(first) and a.ipam_workers() == 2
            assert b.locks_created() == 0 and b.ipam_workers() == 0
            assert await holder(client) == "cm-a"

            a.proc.kill()  # no release: b must wait out the lease
            t0 = time.monotonic()
            await eventually(b.leads, timeout=TAKEOVER_BOUND, interval=0.1)
            print(f"cm-b took over {time.monotonic() - t0:.1f} s after SIGKILL of cm-a")
            assert await holder(client) == "cm-b"
            lease = await client.get(Lease, LEADER_ELECTION_NAMESPACE, LEASE)
            assert lease.spec.lease_transitions == 1
            second = [f"b{i}" for i in range(5)]
            for n in second:
                await client.create(na(n))
            await eventually(lambda: addressed(client, second), timeout=30, interval=0.1)
            assert b.ipam_workers() == 2 and b.locks_created() >= len(second)

        # a clean stop releases the Lease at once (holderIdentity "")
        assert b.proc.stop() == 0
        async with Client(server.url) as client:
            assert await holder(client) == ""
    finally:
        for m in managers:
            m.proc.stop()
        server.stop()
