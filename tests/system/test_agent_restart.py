"""`kill -9` one agent, change its VNIs while it is down, restart it: its fabric converges to exactly the desired state.

The agent uses the sim fabric with a state file, so its switch outlives the
process as a real one does. The other nodes are simulated nodes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.client.rest import Client
from kos.testing.process import APIServerProcess, KosProcess, free_port
from kos.verify.fabric import fabric_violations

pytestmark = pytest.mark.system

SOLO, SOLO_IP = "solo", "100.127.0.1"


def start_agent(server: APIServerProcess, tmp: Path, state: Path, name: str) -> tuple[KosProcess, int]:
    port = free_port()
    p = KosProcess(["agent", "--server", server.url, "--node", SOLO, "--host-ip", SOLO_IP, "--fabric", "sim",
                    "--sim-state", str(state), "--metrics-listen", f"127.0.0.1:{port}", "--insecure", "--lock-file",
                    str(tmp / "solo.lock"), "--log-level", "warning"], tmp / f"{name}.log")  # fmt: skip
    p.wait_http(f"http://127.0.0.1:{port}/healthz")
    return p, port


def na(name: str, node: str, subnet: str) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns"),
                             spec=NetworkAttachmentSpec(node=node, subnet=subnet))  # fmt: skip


async def settled(client: Client, state: Path, timeout: float = 30) -> list[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    problems: list[str] = ["not checked"]
    while asyncio.get_running_loop().time() < deadline:
        nas, _ = await client.list(NetworkAttachment)
        fabric = json.loads(state.read_text()) if state.exists() else {"local": [], "remote": []}
        problems = [p for p in fabric_violations(nas, {SOLO: fabric}) if f"node {SOLO} " in p]
        problems += [f"{n.metadata.name} not ready" for n in nas if not n.is_ready()]
        if not problems:
            return []
        await asyncio.sleep(0.2)
    return problems


async def creates(port: int) -> float:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if (
            line.startswith("kos_agent_fabric_latency_seconds_count")
            and 'op="CreateLocalIfc"' in line
            and 'err="ok"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_agent_restart_converges_to_exactly_the_desired_state(tmp_path: Path) -> None:
    server = APIServerProcess("memory://", tmp_path / "apiserver.log", extra=["--log-level", "warning"]).wait_ready()
    cm_port, sim_port = free_port(), free_port()
    cm = KosProcess(["controller-manager", "--server", server.url, "--metrics-listen", f"127.0.0.1:{cm_port}",
                     "--insecure", "--log-level", "warning"], tmp_path / "cm.log")  # fmt: skip
    sim = KosProcess(["simnodes", "--server", server.url, "--count", "4", "--listen", f"127.0.0.1:{sim_port}",
                      "--insecure", "--log-level", "warning"], tmp_path / "sim.log")  # fmt: skip
    cm.wait_http(f"http://127.0.0.1:{cm_port}/healthz")
    sim.wait_http(f"http://127.0.0.1:{sim_port}/readyz", timeout=60)
    state = tmp_path / "solo-switch.json"
    agent, port = start_agent(server, tmp_path, state, "agent-1")
    try:
        async with Client(server.url) as client:
            for name, vni, block in (("s400", 400, "10.40.0.0/24"), ("s401", 401, "10.41.0.0/24"),
                                     ("s402", 402, "10.42.0.0/24")):  # fmt: skip
                await client.create(Subnet(metadata=ObjectMeta(name=name, namespace="ns"),
                                           spec=SubnetSpec(vni=vni, ipv4=block)))  # fmt: skip
            for i in range(6):
                await client.create(na(f"solo-{i}", SOLO, "s400" if i < 4 else "s401"))
            for i in range(8):
                await client.create(na(f"other-{i}", f"node-{i % 4}", ("s400", "s401", "s402")[i % 3]))
            assert await settled(client, state) == []
            before = json.loads(state.read_text())
            assert len(before["local"]) == 6 and before["remote"]

            agent.kill()  # SIGKILL: the switch state stays, the agent's memory is gone
            for i in range(6, 10):  # new local NAs in a VNI it has
                await client.create(na(f"solo-{i}", SOLO, "s400"))
            await client.create(na("solo-new-vni", SOLO, "s402"))  # a VNI that becomes relevant while down
            for name in ("solo-0", "solo-4", "solo-5"):  # s401 loses all its local NAs: its remotes must go
                await client.delete(NetworkAttachment, "ns", name)
            await client.delete(NetworkAttachment, "ns", "other-0")
            await client.create(na("other-new", "node-2", "s400"))

            agent, port = start_agent(server, tmp_path, state, "agent-2")
            problems = await settled(client, state)
            assert problems == [], "\n".join(problems)
            after = json.loads(state.read_text())
            assert {i["vni"] for i in after["remote"]} == {400, 402}
            # live interfaces were adopted, not torn down and rebuilt: only the 5 new local NAs were created
            assert await creates(port) == 5
    finally:
        for p in (agent, sim, cm, server):
            p.stop()
