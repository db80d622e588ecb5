#!/usr/bin/env python3
"""Benchmark dissemination: how many watch events reach the agents per NA change, against the ideal and a broadcast.

    .venv/bin/python bench/dissemination.py [--scale 100|1000|both] [--json out.json]

Processes: `kos apiserver` (memory store), `kos controller-manager`, `kos simnodes --count N`.
The workload is the driver's power-law virtual networks (`kos.driver.distribution`): NAs
are created on uniformly random nodes at a steady rate, all become ready, then for a while
NAs are deleted and re-created (the driver's cruise phase).

- *Actual*: watch events (not bookmarks) plus objects in list responses received by all
  the simulated agents, counted in their client.
- *Ideal*: replaying every NA change (seen by one extra watch) through the agents'
  selection rules — a node needs a change to NA x if x is, before or after it, a local NA
  of that node with an address, or an addressed, implemented NA of a VNI in which the node
  has a local NA — plus, when a VNI becomes relevant to a node, the NAs it must then learn.
- *Broadcast*: every agent watches all NAs and filters on its side; measured with a few
  real unfiltered watches in the same run (each gets every NA event), times N.
Also reported: resident memory of each process at the end (20,000 NAs at 1,000 nodes), and
the agents' remote-interface programming latency (status.impl write → remote flows, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kos.api import watchframe  # noqa: E402
from kos.api.meta import ObjectMeta  # noqa: E402
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec  # noqa: E402
from kos.client.rest import Client  # noqa: E402
from kos.driver import distribution  # noqa: E402
from kos.http.clientpool import HTTPPool  # noqa: E402
from kos.testing.process import APIServerProcess, KosProcess, free_port  # noqa: E402
from kos.util import calibration  # noqa: E402

NS = "bench"

SCALES = {
    # nodes: (num_nets, top_net_size, exponent, attachments, create rate /s, churn seconds, churn rate /s)
    100: (100, 50, 0.8, 400, 200, 10, 40),
    1000: (10_000, 200, 0.6, 20_000, 400, 10, 100),
}


class Ideal:
    """Replays NA changes through the agents' selection rules and counts the deliveries a perfect filter makes."""

    def __init__(self) -> None:
        self.relevant: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.eligible: dict[int, dict[str, NetworkAttachment]] = collections.defaultdict(dict)
        self.watch = 0
        self.lists = 0
        self.changes = 0
        self.acts = 0
        """Deliveries after which a node must change its fabric (an interface appears, moves or goes)."""

    @staticmethod
    def _remote_ok(na: NetworkAttachment | None) -> bool:
        return na is not None and bool(na.status.ipv4 and na.status.host_ip)

    def _acts(self, old: NetworkAttachment | None, new: NetworkAttachment | None) -> int:
        def local(o: NetworkAttachment | None) -> tuple[int, str] | None:
            return (o.status.address_vni, o.status.ipv4) if o is not None and o.status.ipv4 else None

        def remote(o: NetworkAttachment | None) -> tuple[int, str, str] | None:
            return (o.status.address_vni, o.status.ipv4, o.status.host_ip) if self._remote_ok(o) else None

        n = 1 if local(old) != local(new) else 0
        if remote(old) != remote(new):
            nodes: set[str] = set()
            for o in (old, new):
                if self._remote_ok(o):
                    assert o is not None
                    nodes |= {m for m in self.relevant[o.status.address_vni] if m != o.spec.node}
            n += len(nodes)
        return n

    def event(self, key: str, old: NetworkAttachment | None, new: NetworkAttachment | None) -> None:
        self.changes += 1
        who: set[str] = set()
        for o in (old, new):
            if o is not None and o.status.ipv4:
                who.add(o.spec.node)
            if self._remote_ok(o):
                assert o is not None
                who |= {m for m in self.relevant[o.status.address_vni] if m != o.spec.node}
        self.watch += len(who)
        self.acts += self._acts(old, new)
        before = (old.status.address_vni, old.spec.node) if old is not None and old.status.ipv4 else None
        after = (new.status.address_vni, new.spec.node) if new is not None and new.status.ipv4 else None
        if before is not None and before != after:
            c = self.relevant[before[0]]
            c[before[1]] -= 1
            if c[before[1]] <= 0:
                del c[before[1]]
        if after is not None and after != before:
            v, node = after
            c = self.relevant[v]
            if c[node] == 0:  # the VNI becomes relevant to this node: it lists what it needs
                self.lists += sum(1 for na in self.eligible[v].values() if na.spec.node != node)
            c[node] += 1
        if old is not None:
            self.eligible[old.status.address_vni].pop(key, None)
        if self._remote_ok(new):
            assert new is not None
            self.eligible[new.status.address_vni][key] = new


async def observe(client: Client, rv: str, ideal: Ideal, stop: asyncio.Event) -> None:
    state: dict[str, NetworkAttachment] = {}
    while not stop.is_set():
        try:
            async for ev in client.watch(NetworkAttachment, resource_version=rv, timeout_seconds=3600):
                if ev.type == "BOOKMARK":
                    rv = ev.resource_version
                    continue
                na = ev.object
                key = f"{na.metadata.namespace}/{na.metadata.name}"
                old = state.get(key)
                if ev.type == "DELETED":
                    state.pop(key, None)
                    ideal.event(key, old, None)
                else:
                    state[key] = na
                    ideal.event(key, old, na)
                rv = ev.resource_version
        except Exception:
            if stop.is_set():
                return
            raise


async def broadcast(url: str, rv: str, counts: list[int], i: int) -> None:
    pool = HTTPPool(url)
    try:
        async for lines in pool.stream("/apis/network.example.com/v1alpha1/networkattachments",
                                       query={"watch": "1", "resourceVersion": rv}):  # fmt: skip
            counts[i] += sum(watchframe.decode(line).type != watchframe.BOOKMARK for line in lines)
    finally:
        await pool.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return await r.text()


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def histogram_quantile(text: str, name: str, q: float) -> float:
    buckets: dict[float, float] = collections.defaultdict(float)
    for m in re.finditer(rf'^{name}_bucket{{[^}}]*le="([^"]+)"[^}}]*}} (\S+)$', text, re.M):
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        buckets[le] += float(m.group(2))
    if not buckets:
        return float("nan")
    total = buckets[float("inf")]
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return float("inf")


async def run(nodes: int, tmp: Path, seed: int) -> dict[str, Any]:
    num_nets, top, exponent, limit, rate, churn_s, churn_rate = SCALES[nodes]
    rng = random.Random(seed)
    p = distribution.plan(num_nets=num_nets, top_net_size=top, exponent=exponent, rng=rng)
    server = APIServerProcess(
        "memory://", tmp / f"apiserver-{nodes}.log", extra=["--log-level", "warning"]
    ).wait_ready()
    cm_port, sim_port = free_port(), free_port()
    cm = KosProcess(["controller-manager", "--server", server.url, "--metrics-listen", f"127.0.0.1:{cm_port}",
                     "--insecure", "--log-level", "warning"], tmp / f"cm-{nodes}.log")  # fmt: skip
    sim = KosProcess(["simnodes", "--server", server.url, "--count", str(nodes), "--listen", f"127.0.0.1:{sim_port}",
                      "--insecure", "--log-level", "warning"], tmp / f"sim-{nodes}.log")  # fmt: skip
    sim_url = f"http://127.0.0.1:{sim_port}"
    try:
        cm.wait_http(f"http://127.0.0.1:{cm_port}/healthz", timeout=60)
        sim.wait_http(sim_url + "/readyz", timeout=300)
        async with Client(server.url, connections=200) as client:
            for n in p.networks:
                for s in n.subnets:
                    await client.create(Subnet(metadata=ObjectMeta(name=s.name, namespace=NS),
                                               spec=SubnetSpec(vni=n.vni, ipv4=s.cidr)))  # fmt: skip
            while True:
                subnets, rv = await client.list(Subnet, NS)
                if all(s.status.validated for s in subnets):
                    break
                await asyncio.sleep(0.2)
            slots = [(n, s) for n in p.networks for s in n.subnets for _ in range(s.slots)]
            rng.shuffle(slots)
            slots = slots[:limit]
            before = await scrape(sim_url + "/metrics")
            ideal = Ideal()
            stop = asyncio.Event()
            observer = asyncio.create_task(observe(client, rv, ideal, stop))
            counts = [0] * 4
            casters = [asyncio.create_task(broadcast(server.url, rv, counts, i)) for i in range(len(counts))]
            await asyncio.sleep(0.5)
            t0 = time.monotonic()
            live: list[tuple[str, distribution.NetworkPlan, distribution.SubnetPlan]] = []
            sem = asyncio.Semaphore(64)

            async def create(i: int, net: distribution.NetworkPlan, sub: distribution.SubnetPlan) -> None:
                name = f"{net.vni:06x}-{i}"
                async with sem:
                    await client.create(NetworkAttachment(
                        metadata=ObjectMeta(name=name, namespace=NS),
                        spec=NetworkAttachmentSpec(node=f"node-{rng.randrange(nodes)}", subnet=sub.name),
                    ))  # fmt: skip
                live.append((name, net, sub))

            tasks = []
            for i, (net, sub) in enumerate(slots):
                tasks.append(asyncio.create_task(create(i, net, sub)))
                await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
            await asyncio.gather(*tasks)
            created_s = time.monotonic() - t0
            await wait_ready(client, len(slots), timeout=600)
            ready_s = time.monotonic() - t0
            memory = {"apiserver_mb": rss_mb(server.proc.pid), "simnodes_mb": rss_mb(sim.proc.pid),
                      "controller_manager_mb": rss_mb(cm.proc.pid)}  # fmt: skip
            # cruise: delete one, create one
            t1 = time.monotonic()
            j = len(slots)
            n_churn = int(churn_s * churn_rate)
            for k in range(n_churn):  # the new NA takes the slot (and subnet) of the deleted one
                victim, net, sub = live.pop(rng.randrange(len(live)))
                await client.delete(NetworkAttachment, NS, victim)
                await create(j, net, sub)
                j += 1
                await asyncio.sleep(max(0.0, t1 + (k + 1) / churn_rate - time.monotonic()))
            await wait_ready(client, len(live), timeout=300)
            await asyncio.sleep(2.0)  # the last notifications
            stop.set()
            after = await scrape(sim_url + "/metrics")
            observer.cancel()
            for c in casters:
                c.cancel()
            await asyncio.gather(observer, *casters, return_exceptions=True)
        actual_watch = metric(after, "kos_simnodes_watch_events_received") - metric(
            before, "kos_simnodes_watch_events_received"
        )
        actual_lists = metric(after, "kos_simnodes_list_objects_received") - metric(
            before, "kos_simnodes_list_objects_received"
        )
        actual = actual_watch + actual_lists
        ideal_total = ideal.watch + ideal.lists
        per_caster = sum(counts) / len(counts)
        return {
            "nodes": nodes, "attachments": len(slots), "churned": n_churn, "avg_peers": p.avg_peers,
            "na_changes": ideal.changes, "actual_deliveries": actual, "actual_watch_events": actual_watch,
            "actual_list_objects": actual_lists, "ideal_deliveries": ideal_total, "ratio_to_ideal": actual / ideal_total,
            "fabric_changing_deliveries": ideal.acts + ideal.lists,
            "ratio_to_fabric_changing": actual / (ideal.acts + ideal.lists),
            "broadcast_deliveries": per_caster * nodes, "broadcast_over_actual": per_caster * nodes / actual,
            "create_seconds": created_s, "ready_seconds": ready_s, "memory": memory,
            "remote_ifc_p99_s": histogram_quantile(after, "kos_agent_attachment_impl_to_remote_ifc_latency_seconds", 0.99),
            "remote_ifc_p50_s": histogram_quantile(after, "kos_agent_attachment_impl_to_remote_ifc_latency_seconds", 0.5),
        }  # fmt: skip
    finally:
        for proc in (sim, cm, server):
            proc.stop()


async def wait_ready(client: Client, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nas, _ = await client.list(NetworkAttachment, NS)
        if len(nas) == n and all(na.is_ready() for na in nas):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{sum(1 for na in nas if na.is_ready())} of {n} NAs ready after {timeout}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=["100", "1000", "both"], default="both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    calibration.print_calibration()
    scales = [100, 1000] if args.scale == "both" else [int(args.scale)]
    results = []
    with tempfile.TemporaryDirectory() as d:
        for nodes in scales:
            r = asyncio.run(run(nodes, Path(d), args.seed))
            results.append(r)
            m = r["memory"]
            print(f"== {nodes} nodes, {r['attachments']} NAs (+{r['churned']} churned), avgPeers {r['avg_peers']:.1f}, "
                  f"{r['na_changes']} NA changes")  # fmt: skip
            print(f"   delivered to agents {r['actual_deliveries']:.0f} (watch {r['actual_watch_events']:.0f} + list "
                  f"{r['actual_list_objects']:.0f}); ideal {r['ideal_deliveries']:.0f}; ratio {r['ratio_to_ideal']:.3f}")  # fmt: skip
            print(
                f"   deliveries that change a node's fabric {r['fabric_changing_deliveries']:.0f}; ratio "
                f"{r['ratio_to_fabric_changing']:.3f}"
            )
            print(f"   broadcast baseline {r['broadcast_deliveries']:.0f}: {r['broadcast_over_actual']:.1f}x more")
            print(f"   memory: apiserver {m['apiserver_mb']:.0f} MB, simnodes {m['simnodes_mb']:.0f} MB, "
                  f"controller-manager {m['controller_manager_mb']:.0f} MB; all ready {r['ready_seconds']:.0f}s after "
                  f"the first create; remote interface p50/p99 {r['remote_ifc_p50_s']}/{r['remote_ifc_p99_s']} s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
