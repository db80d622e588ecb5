"""20 simulated nodes, 500 NAs in several VNIs: all ready, invariants hold, connectivity and isolation by trace.

The nodes endpoint serves HTTPS with a certificate from a test CA, and every client of it (kos verify, the
traces below) verifies it against that CA (`--nodes-ca-file`)."""

from __future__ import annotations

import asyncio
import random
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.client.rest import Client
from kos.pki import directory
from kos.pki.authority import issue_server, new_ca
from kos.testing.process import APIServerProcess, KosProcess, free_port
from kos.testing.wait import eventually

pytestmark = pytest.mark.system

NODES = 20
# (namespace, subnet, vni, cidr): VNIs 301 and 302 use the same addresses in different namespaces
SUBNETS = [
    ("red", "r1", 300, "10.30.0.0/24"), ("red", "r2", 300, "10.30.1.0/24"), ("blue", "b1", 301, "10.31.0.0/24"),
    ("green", "g1", 302, "10.31.0.0/24"), ("green", "g2", 303, "10.33.0.0/24"), ("blue", "b2", 304, "10.34.0.0/22"),
]  # fmt: skip


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.server = APIServerProcess(
            "memory://", tmp / "apiserver.log", extra=["--log-level", "warning"]
        ).wait_ready()
        cm_port = free_port()
        self.cm = KosProcess(["controller-manager", "--server", self.server.url, "--metrics-listen",
                              f"127.0.0.1:{cm_port}", "--insecure", "--log-level", "warning"], tmp / "cm.log")  # fmt: skip
        self.cm.wait_http(f"http://127.0.0.1:{cm_port}/healthz")
        pki = tmp / "pki"
        ca = new_ca("test-ca")
        pki.mkdir()
        directory.write(pki, "ca", ca)
        directory.write(pki, "simnodes", issue_server(ca, "kos-simnodes", ["localhost"], []))
        self.ca_file = pki / "ca.crt"
        self.nodes_ssl = ssl.create_default_context(cafile=self.ca_file)
        self.nodes_port = free_port()
        self.nodes_url = f"https://localhost:{self.nodes_port}"
        self.sim = KosProcess(["simnodes", "--server", self.server.url, "--count", str(NODES), "--listen",
                               f"127.0.0.1:{self.nodes_port}", "--tls-cert-file", str(pki / "simnodes.crt"),
                               "--tls-private-key-file", str(pki / "simnodes.key"), "--log-level", "warning"],
                              tmp / "simnodes.log")  # fmt: skip
        self.sim.wait_http(self.nodes_url + "/readyz", timeout=60, context=self.nodes_ssl)

    def stop(self) -> None:
        for p in (self.sim, self.cm, self.server):
            p.stop()


def verify(c: Cluster, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kos", "verify", "--server", c.server.url, "--nodes-endpoint", c.nodes_url,
         "--nodes-ca-file", str(c.ca_file), "--wait", "30", *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def all_ready(client: Client, n: int, timeout: float = 60) -> list[NetworkAttachment]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        nas, _ = await client.list(NetworkAttachment)
        if len(nas) == n and all(na.is_ready() for na in nas):
            return nas
        assert asyncio.get_running_loop().time() < deadline, f"{sum(1 for na in nas if na.is_ready())} of {n} NAs ready"
        await asyncio.sleep(0.2)


async def traces(session: aiohttp.ClientSession, url: str, asks: list[dict[str, str]]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(0, len(asks), 5000):
        async with session.post(url + "/traces", json=asks[i : i + 5000]) as r:
            assert r.status == 200, await r.text()
            out += await r.json()
    return out


def ask(src: NetworkAttachment, dst: NetworkAttachment) -> dict[str, str]:
    return {"node": src.spec.node, "interface": src.status.ifc_name, "ip": dst.status.ipv4}


async def test_twenty_nodes_five_hundred_attachments(tmp_path: Path) -> None:
    rng = random.Random(42)
    cluster = Cluster(tmp_path)
    try:
        async with (
            Client(cluster.server.url) as client,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=cluster.nodes_ssl)) as session,
        ):
            for ns, name, vni, block in SUBNETS:
                await client.create(Subnet(metadata=ObjectMeta(name=name, namespace=ns),
                                           spec=SubnetSpec(vni=vni, ipv4=block)))  # fmt: skip
            specs = [rng.choice(SUBNETS) for _ in range(500)]
            await asyncio.gather(*(
                client.create(NetworkAttachment(
                    metadata=ObjectMeta(name=f"na-{i}", namespace=ns),
                    spec=NetworkAttachmentSpec(node=f"node-{rng.randrange(NODES)}", subnet=name),
                ))
                for i, (ns, name, _, _) in enumerate(specs)
            ))  # fmt: skip
            nas = await all_ready(client, 500)
            v = verify(cluster)
            assert v.returncode == 0, v.stdout + v.stderr

            by_vni: dict[int, list[NetworkAttachment]] = {}
            for na in nas:
                by_vni.setdefault(na.status.address_vni, []).append(na)
            assert sorted(by_vni) == [300, 301, 302, 303, 304]
            # every pair in one VNI reaches each other, delivered to exactly the right interface
            pairs = [(a, b) for group in by_vni.values() for a in group for b in group if a is not b]
            results = await traces(session, cluster.nodes_url, [ask(a, b) for a, b in pairs])
            bad = [(a.metadata.name, b.metadata.name, r) for (a, b), r in zip(pairs, results, strict=True)
                   if not r["reachable"] or (r["node"], r["interface"]) != (b.spec.node, b.status.ifc_name)]  # fmt: skip
            assert not bad, f"{len(bad)} of {len(pairs)} same-VNI pairs fail, e.g. {bad[:3]}"
            # no pair across VNIs does (even where two VNIs use the same addresses)
            cross = [(a, b) for a in nas for b in rng.sample(nas, 25) if a.status.address_vni != b.status.address_vni]
            results = await traces(session, cluster.nodes_url, [ask(a, b) for a, b in cross])
            leaks = [(a.metadata.name, b.metadata.name, r) for (a, b), r in zip(cross, results, strict=True)
                     if r["reachable"] and (r["node"], r["interface"]) == (b.spec.node, b.status.ifc_name)]  # fmt: skip
            assert not leaks, f"{len(leaks)} cross-VNI pairs connect, e.g. {leaks[:3]}"
            same_ip_other_vni = [(a, b) for a, b in cross if {a.status.address_vni, b.status.address_vni} == {301, 302}]
            assert same_ip_other_vni, "the workload should include the overlapping VNIs"

            # delete half, with `kos verify --watch` checking every revision meanwhile: the invariants hold and the
            # deleted NAs are gone from every node
            log = tmp_path / "verify-watch.log"
            watching = KosProcess(["verify", "--server", cluster.server.url, "--nodes-endpoint", cluster.nodes_url,
                                   "--nodes-ca-file", str(cluster.ca_file), "--wait", "30", "--watch", "4"], log)  # fmt: skip
            # barrier: verify has its snapshot and follows every change after it (however late its watch opens)
            await eventually(lambda: "following attachments" in log.read_text(errors="replace"), timeout=60)
            gone = rng.sample(nas, 250)
            await asyncio.gather(*(client.delete(NetworkAttachment, na.metadata.namespace, na.metadata.name)
                                   for na in gone))  # fmt: skip
            await all_ready(client, 250)
            code = await asyncio.to_thread(watching.proc.wait, 120)
            watching.stop()
            assert code == 0, log.read_text(errors="replace")
            v = verify(cluster)
            assert v.returncode == 0, v.stdout + v.stderr
            gone_pairs = {(na.status.address_vni, na.status.ipv4) for na in gone}
            live_pairs = {(na.status.address_vni, na.status.ipv4) for na in (await client.list(NetworkAttachment))[0]}
            async with session.get(cluster.nodes_url + "/nodes") as r:
                nodes = await r.json()
            for n in nodes:
                async with session.get(f"{cluster.nodes_url}/nodes/{n['node']}/fabric") as r:
                    st = await r.json()
                held = {(i["vni"], i["guest_ip"]) for i in st["local"]} | {
                    (i["vni"], i["guest_ip"]) for i in st["remote"]
                }
                assert not (held & (gone_pairs - live_pairs)), f"{n['node']} still holds deleted NAs"
    finally:
        cluster.stop()
