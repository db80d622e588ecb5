#!/usr/bin/env python3
"""Benchmark IPAM: addresses assigned per second, time to the first address after a restart, cost of a choice.

    .venv/bin/python bench/ipam.py [--runs 3] [--attachments 20000] [--live 10000] [--quick] [--json out.json]

1. Throughput: `kos apiserver --storage memory://` and `kos controller-manager` run as
   their own processes; this script creates NAs over HTTP (32 in flight) faster
   than IPAM can address them, and watches them. Reported: addresses per second
   = NAs / (last address written − first create), from the server's write stamps,
   with no agents running.
2. Restart: with `--live` NAs addressed, the controller manager is killed (SIGKILL)
   and started again; one new NA is created at once. Reported: seconds from the
   new process's start to that NA's address (server stamp).
3. Choice cost: microseconds per address choice in a /12 subnet holding 10 to 500,000
   addresses already (in-process, no I/O) — it grows with log(n), not n.
Figures are medians over --runs runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kos.api.meta import ObjectMeta  # noqa: E402
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec  # noqa: E402
from kos.client.rest import Client  # noqa: E402
from kos.controllers.addresses import AddressSets  # noqa: E402
from kos.testing.process import APIServerProcess, KosProcess, free_port  # noqa: E402
from kos.util import calibration  # noqa: E402

NS = "bench"


def start_cm(server: APIServerProcess, tmp: Path, name: str) -> tuple[KosProcess, float]:
    port = free_port()
    t0 = time.time()
    p = KosProcess(["controller-manager", "--server", server.url, "--metrics-listen", f"127.0.0.1:{port}",
                    "--insecure", "--log-level", "warning"], tmp / f"{name}.log")  # fmt: skip
    p.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
    return p, t0


async def create_subnets(client: Client, n_nas: int) -> list[str]:
    names = []
    for i in range(max(1, n_nas // 30_000 + 1)):
        name = f"sn-{i}"
        await client.create(Subnet(metadata=ObjectMeta(name=name, namespace=NS),
                                   spec=SubnetSpec(vni=100 + i, ipv4=f"10.{16 + i}.0.0/16")))  # fmt: skip
        names.append(name)
    for _ in range(200):
        items, _ = await client.list(Subnet, NS)
        if all(s.status.validated for s in items):
            return names
        await asyncio.sleep(0.05)
    raise RuntimeError("subnets were not validated")


async def create_many(client: Client, names: list[str], subnets: list[str], concurrency: int = 32) -> float:
    it = iter(names)
    t0 = time.time()

    async def worker() -> None:
        for name in it:
            await client.create(NetworkAttachment(
                metadata=ObjectMeta(name=name, namespace=NS),
                spec=NetworkAttachmentSpec(node=f"node-{hash(name) % 100}", subnet=subnets[hash(name) % len(subnets)]),
            ))  # fmt: skip

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return t0


async def addressed_count(server: str) -> int:
    """How many NAs have an address, from a one-item page (cheap for the server, unlike listing them all)."""
    url = f"{server}/apis/network.example.com/v1alpha1/namespaces/{NS}/networkattachments"
    async with aiohttp.ClientSession() as s, s.get(url, params={"fieldSelector": "status.ipv4!=", "limit": "1"}) as r:
        body = await r.json()
    return len(body["items"]) + int(body["metadata"].get("remainingItemCount", 0))


async def wait_addressed(client: Client, n: int, timeout: float) -> list[NetworkAttachment]:
    deadline = time.time() + timeout
    got = 0
    while time.time() < deadline:
        got = await addressed_count(client.server)
        if got >= n:
            items, _ = await client.list(NetworkAttachment, NS, field_selector="status.ipv4!=")
            return items
        await asyncio.sleep(0.2)
    raise RuntimeError(f"only {got} of {n} NAs were addressed in {timeout}s")


def address_time(na: NetworkAttachment) -> float:
    t = na.extended_metadata.write_time("status.address")
    assert t is not None
    return t.timestamp()


async def throughput_run(n: int, tmp: Path) -> dict[str, Any]:
    server = APIServerProcess("memory://", tmp / f"apiserver-{time.time_ns()}.log",
                              extra=["--log-level", "warning"]).wait_ready()  # fmt: skip
    cm, _ = start_cm(server, tmp, f"cm-{time.time_ns()}")
    try:
        async with Client(server.url) as client:
            subnets = await create_subnets(client, n)
            t0 = await create_many(client, [f"na-{i}" for i in range(n)], subnets)
            created = time.time()
            items = await wait_addressed(client, n, timeout=max(120, n / 100))
            last = max(address_time(na) for na in items)
            ips = [(na.status.address_vni, na.status.ipv4) for na in items]
            assert len(set(ips)) == len(ips), "duplicate addresses"
            return {"attachments": n, "addresses_per_s": n / (last - t0), "create_s": created - t0,
                    "assign_s": last - t0}  # fmt: skip
    finally:
        cm.stop()
        server.stop()


async def restart_run(live: int, tmp: Path) -> dict[str, Any]:
    server = APIServerProcess("memory://", tmp / f"apiserver-r-{time.time_ns()}.log",
                              extra=["--log-level", "warning"]).wait_ready()  # fmt: skip
    cm, _ = start_cm(server, tmp, f"cm-r1-{time.time_ns()}")
    try:
        async with Client(server.url) as client:
            subnets = await create_subnets(client, live)
            await create_many(client, [f"na-{i}" for i in range(live)], subnets)
            await wait_addressed(client, live, timeout=max(120, live / 100))
            cm.kill()
            cm, started = start_cm(server, tmp, f"cm-r2-{time.time_ns()}")
            await client.create(NetworkAttachment(metadata=ObjectMeta(name="after-restart", namespace=NS),
                                                  spec=NetworkAttachmentSpec(node="node-1", subnet=subnets[0])))  # fmt: skip
            deadline = time.time() + 120
            while time.time() < deadline:
                na = await client.get(NetworkAttachment, NS, "after-restart")
                if na.status.ipv4:
                    return {"live": live, "first_address_after_restart_s": address_time(na) - started}
                await asyncio.sleep(0.05)
            raise RuntimeError("no address after the restart")
    finally:
        cm.stop()
        server.stop()


def choice_cost(fills: list[int], picks: int = 20_000) -> dict[int, dict[str, float]]:
    """µs per choice for kos's structure and, for contrast, the original's (a random gap among all gaps: O(gaps))."""
    lo, hi = 0x0A000002, 0x0A0FFFFE  # a /12: about a million addresses
    out = {}
    for fill in fills:
        used = random.Random(2).sample(range(lo, hi + 1), fill)
        a = AddressSets(random.Random(1))
        for x in used:
            a.add(1, x)
        t0 = time.perf_counter()
        for _ in range(picks):
            a.pick(1, lo, hi)
        ours = (time.perf_counter() - t0) / picks * 1e6
        taken = sorted(used)
        rng = random.Random(3)
        n = max(5, min(picks, 2_000_000 // (fill + 1)))
        t0 = time.perf_counter()
        for _ in range(n):
            original_gap_choice(taken, lo, hi, rng)
        out[fill] = {"kos": ours, "original": (time.perf_counter() - t0) / n * 1e6}
    return out


def original_gap_choice(taken: list[int], lo: int, hi: int, rng: random.Random) -> int:
    """The original KOS choice (reference §4.4): list the maximal free gaps, pick one, pick an address in it."""
    gaps = []
    prev = lo - 1
    for t in taken:
        if t > prev + 1:
            gaps.append((prev + 1, t - 1))
        prev = t
    if prev < hi:
        gaps.append((prev + 1, hi))
    a, b = rng.choice(gaps)
    return rng.randint(a, b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--attachments", type=int, default=20_000)
    ap.add_argument("--live", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    calibration.print_calibration()
    if args.quick:
        args.runs, args.attachments, args.live = 1, 2000, 2000
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = [asyncio.run(throughput_run(args.attachments, tmp)) for _ in range(args.runs)]
        med = statistics.median(r["addresses_per_s"] for r in runs)
        results["throughput"] = {"median_addresses_per_s": med, "runs": runs}
        print(f"== IPAM throughput, no agents, {args.attachments} NAs: {med:.0f} addresses/s (runs: "
              + ", ".join(f"{r['addresses_per_s']:.0f}" for r in runs) + ")")  # fmt: skip
        runs = [asyncio.run(restart_run(args.live, tmp)) for _ in range(args.runs)]
        med = statistics.median(r["first_address_after_restart_s"] for r in runs)
        results["restart"] = {"median_s": med, "runs": runs}
        print(f"== restart with {args.live} live NAs: first new address after {med:.2f} s (runs: "
              + ", ".join(f"{r['first_address_after_restart_s']:.2f}" for r in runs) + ")")  # fmt: skip
    fills = [10, 1_000, 100_000, 500_000]
    cost = choice_cost(fills)
    results["choice_us"] = cost
    print("== address choice in a /12 (µs per choice; kos vs the original's gap choice):")
    for f, c in cost.items():
        print(f"   {f:7d} in use: kos {c['kos']:6.1f} µs   original {c['original']:10.1f} µs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
