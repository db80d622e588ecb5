"""A real controller manager recovers when its apiserver comes back on a fresh store (kubernetes #91073).

`kos apiserver --storage memory://` is killed and started again on the same
port: the new store starts at revision 0, far below the revision every informer
of the controller manager last saw. Before issue 10 each of them retried its
stale revision every 3 s forever (the 504 carried no `ResourceVersionTooLarge`
cause and the reflector relisted only after 410), so nothing created on the new
store was ever validated or addressed. Now they relist and serve the new store.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.client.rest import Client
from kos.testing.process import APIServerProcess, KosProcess, free_port
from kos.testing.wait import eventually

pytestmark = pytest.mark.system

NS = "restart"


def sn(name: str, vni: int) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4=f"10.{vni % 256}.0.0/24"))


def na(name: str, subnet: str) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS),
                             spec=NetworkAttachmentSpec(node="node-1", subnet=subnet))  # fmt: skip


async def addressed(client: Client, names: list[str]) -> bool:
    nas, _ = await client.list(NetworkAttachment, NS)
    got = {n.metadata.name for n in nas if n.status.ipv4}
    return set(names) <= got


async def test_controller_manager_recovers_after_the_apiserver_restarts_on_a_fresh_store(tmp_path: Path) -> None:
    port, cm_port = free_port(), free_port()
    server = APIServerProcess("memory://", tmp_path / "apiserver-1.log", port=port,
                              extra=["--log-level", "warning"]).wait_ready()  # fmt: skip
    cm = KosProcess(["controller-manager", "--server", server.url, "--metrics-listen", f"127.0.0.1:{cm_port}",
                     "--log-level", "info"], tmp_path / "cm.log")  # fmt: skip
    try:
        cm.wait_http(f"http://127.0.0.1:{cm_port}/healthz")
        async with Client(server.url) as client:
            await client.create(sn("before", 300))
            names = [f"a{i}" for i in range(15)]
            for n in names:
                await client.create(na(n, "before"))
            await eventually(lambda: addressed(client, names), timeout=30, interval=0.1)
            # the last event of every kind the manager watches is now far above what the new store will
            # reach (a client whose revision the new store has already passed cannot tell that the store
            # was replaced — nor can a Kubernetes client; etcd restores bump the revision for that reason)
            await client.patch(Subnet, NS, "before", {"metadata": {"labels": {"touched": "yes"}}})
            _, stale = await client.list(Subnet, NS)

        server.kill()  # the store goes with it
        await asyncio.sleep(0.5)  # the controller manager notices its watches broke
        server = APIServerProcess("memory://", tmp_path / "apiserver-2.log", port=port,
                                  extra=["--log-level", "warning"]).wait_ready()  # fmt: skip
        t0 = time.monotonic()
        async with Client(server.url) as client:
            created = await client.create(sn("after", 301))
            await client.create(na("b0", "after"))
            assert int(created.metadata.resource_version) < int(stale)

            async def validated() -> bool:
                s = await client.get(Subnet, NS, "after")
                return s.status.validated

            await eventually(validated, timeout=30, interval=0.1)
            await eventually(lambda: addressed(client, ["b0"]), timeout=30, interval=0.1)
            print(f"recovered {time.monotonic() - t0:.1f} s after the restart")
        assert "is ahead of the server" in cm.log_path.read_text(errors="replace")
    finally:
        cm.stop()
        server.stop()
