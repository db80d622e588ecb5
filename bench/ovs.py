#!/usr/bin/env python3
"""Benchmark the OVS fabric against one process per call, on a real Open vSwitch (root; userspace datapath).

    sudo .venv/bin/python bench/ovs.py [--runs 5] [--remotes 2500] [--sample 200] [--locals 30] [--json out.json]

One simulated host is built as in the datapath tests (`kos.testing.ovs.Lab`: a
network namespace with its own ovsdb-server and ovs-vswitchd, `netdev`
datapath) and the fabric is opened on it as an agent would (`OVSFabric.open`).

1. Remote flows: `--remotes` remote interfaces (2 flows each; 2,500 → 5,000
   flows) created through the fabric by that many concurrent callers — they
   coalesce into a few `ovs-ofctl --bundle` processes — then deleted again.
   Also with 2, 32 and 128 concurrent callers, what an agent with that many
   workers gets. Beside it, the one-process-per-flow way (`ovs-ofctl add-flow`
   per flow, one after the other) on a sample of `--sample` flows: the per-flow
   cost, and its extrapolation to the same number of flows (not run in full:
   it takes a minute).
2. One local attachment, end to end in the fabric: internal port created and
   numbered by ovs-vswitchd, then its 3 flows installed (`create_local_ifc`),
   `--locals` times one after the other. Beside it, the per-call way:
   `ovs-vsctl add-port … type=internal …` (waits for vswitchd), `ovs-vsctl get
   interface … ofport`, then 3 × `ovs-ofctl add-flow`.
3. Restart: with the remote and `--locals` local interfaces installed, a second
   fabric is opened on the switch as a restarted agent would, and lists and
   reconciles what it holds.
Figures are medians over `--runs` runs (p50 over the attachments within a run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# this script is named like the `ovs` package the fabric uses: keep its own directory off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "src"))

from kos.api import names  # noqa: E402
from kos.fabric import flows  # noqa: E402
from kos.fabric.interface import LocalNetIfc, RemoteNetIfc  # noqa: E402
from kos.fabric.ovs.fabric import OVSFabric, OVSSettings  # noqa: E402
from kos.testing import ovs as ovslab  # noqa: E402
from kos.util import calibration  # noqa: E402


def remote_ifcs(n: int, vni: int = 0x2A) -> list[RemoteNetIfc]:
    out = []
    for i in range(n):
        ip = f"10.{100 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"
        out.append(RemoteNetIfc(vni, names.mac_address(vni, ip), ip, "192.168.99.2"))
    return out


def local_ifc(i: int, vni: int = 0x2B) -> LocalNetIfc:
    ip = f"10.50.{i // 250}.{i % 250 + 1}"
    return LocalNetIfc(names.interface_name(vni, ip), vni, names.mac_address(vni, ip), ip)


async def with_callers(n: int, items: list[Any], call: Any) -> None:
    """`call(item)` for every item, at most `n` at a time (as an agent with `n` workers would)."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await call(item)

    await asyncio.gather(*(worker() for _ in range(n)))


async def sh(*cmd: str) -> None:
    p = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {err.decode().strip()}")


async def bench_remote(fabric: OVSFabric, n: int, callers: list[int]) -> dict[str, Any]:
    ifcs = remote_ifcs(n)
    out: dict[str, Any] = {}
    for c in callers:
        procs0, batches0 = fabric.ofctl.processes, fabric.flow_mods.batches
        t0 = time.perf_counter()
        await with_callers(c or n, ifcs, fabric.create_remote_ifc)
        create = time.perf_counter() - t0
        procs = fabric.ofctl.processes - procs0
        t0 = time.perf_counter()
        await with_callers(c or n, ifcs, fabric.delete_remote_ifc)
        delete = time.perf_counter() - t0
        out[str(c or "all")] = {"create_s": create, "delete_s": delete, "ofctl_processes": procs,
                                "bundles": fabric.flow_mods.batches - batches0}  # fmt: skip
    return out


async def bench_per_flow(h: ovslab.Host, sample: int, *options: str) -> float:
    """Seconds per flow with one `ovs-ofctl add-flow` process per flow (sequential, as a naive agent would)."""
    fs = [f for r in remote_ifcs(sample // 2, vni=0x3A) for f in flows.remote_flows(r, 1)]
    t0 = time.perf_counter()
    for f in fs:
        await sh("ovs-ofctl", "-O", "OpenFlow13", *options, "add-flow", h.mgmt_socket, f.add_spec())
    per_flow = (time.perf_counter() - t0) / len(fs)
    await sh("ovs-ofctl", "-O", "OpenFlow13", "del-flows", h.mgmt_socket, "tun_id=0x3a")
    return per_flow


async def bench_local(fabric: OVSFabric, n: int, base: int) -> list[float]:
    times = []
    ifcs = [local_ifc(base + i) for i in range(n)]
    for ifc in ifcs:
        t0 = time.perf_counter()
        await fabric.create_local_ifc(ifc)
        times.append(time.perf_counter() - t0)
    await asyncio.gather(*(fabric.delete_local_ifc(ifc) for ifc in ifcs))
    return times


async def bench_local_per_call(h: ovslab.Host, n: int, base: int) -> list[float]:
    times = []
    db = f"--db={h.ovsdb}"
    ifcs = [local_ifc(base + i, vni=0x2C) for i in range(n)]
    for ifc in ifcs:
        t0 = time.perf_counter()
        await sh("ovs-vsctl", db, "add-port", "kos", ifc.name, "--", "set", "interface", ifc.name, "type=internal",
                 f"mac=\"{ifc.guest_mac}\"", f"external_ids:kos-vni={ifc.vni}", f"external_ids:kos-guest-ip={ifc.guest_ip}",
                 f"external_ids:kos-guest-mac=\"{ifc.guest_mac}\"")  # fmt: skip
        p = await asyncio.create_subprocess_exec("ovs-vsctl", db, "get", "interface", ifc.name, "ofport",
                                                 stdout=asyncio.subprocess.PIPE)  # fmt: skip
        out, _ = await p.communicate()
        ofport = int(out.decode().strip())
        for f in flows.local_flows(ifc, ofport):
            await sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", h.mgmt_socket, f.add_spec())
        times.append(time.perf_counter() - t0)
    for ifc in ifcs:
        await sh("ovs-ofctl", "-O", "OpenFlow13", "del-flows", h.mgmt_socket,
                 f"cookie={flows.cookie(flows.COOKIE_LOCAL, ifc.guest_mac):#x}/-1")  # fmt: skip
    await sh("ovs-vsctl", db, *[a for ifc in ifcs for a in ("--", "del-port", "kos", ifc.name)])
    return times


async def bench_restart(fabric: OVSFabric, h: ovslab.Host, remotes: int, locals_: int) -> dict[str, float]:
    """A restarted agent's start on a switch holding `remotes` remote and `locals_` local interfaces."""
    rs, ls = remote_ifcs(remotes), [local_ifc(50_000 + i) for i in range(locals_)]
    await asyncio.gather(*(fabric.create_remote_ifc(r) for r in rs), *(fabric.create_local_ifc(i) for i in ls))
    t0 = time.perf_counter()
    again = await OVSFabric.open("bench", h.ip, OVSSettings(ovsdb=h.ovsdb, rundir=str(h.dir), datapath="netdev"))
    t_open = time.perf_counter() - t0
    got_l = await again.list_local_ifcs()
    got_r = await again.list_remote_ifcs()
    total = time.perf_counter() - t0
    assert len(got_l) == locals_ and len(got_r) == remotes, (len(got_l), len(got_r))
    processes = again.ofctl.processes  # two dumps and nothing else: nothing to repair
    await again.close()
    await asyncio.gather(*(fabric.delete_remote_ifc(r) for r in rs), *(fabric.delete_local_ifc(i) for i in ls))
    return {"open_s": t_open, "open_and_list_s": total, "ofctl_processes": processes}


def p50(v: list[float]) -> float:
    return statistics.median(v)


async def run(args: argparse.Namespace, h: ovslab.Host) -> dict[str, Any]:
    fabric = await OVSFabric.open("bench", h.ip, OVSSettings(ovsdb=h.ovsdb, rundir=str(h.dir), datapath="netdev"))
    await fabric.list_local_ifcs()
    await fabric.list_remote_ifcs()
    runs: list[dict[str, Any]] = []
    try:
        await bench_local(fabric, 3, 10_000)  # warm-up: first ports, first processes
        for r in range(args.runs):
            one: dict[str, Any] = {}
            one["remote"] = await bench_remote(fabric, args.remotes, [0, 128, 64, 32, 2])
            one["per_flow_s"] = await bench_per_flow(h, args.sample)
            one["per_flow_no_names_s"] = await bench_per_flow(h, args.sample, "--no-names")
            one["local_s"] = await bench_local(fabric, args.locals, r * args.locals)
            one["local_per_call_s"] = await bench_local_per_call(h, args.locals, r * args.locals)
            one["restart"] = await bench_restart(fabric, h, args.remotes, args.locals)
            runs.append(one)
            print(f"run {r + 1}/{args.runs}: {args.remotes} remote ifcs {one['remote']['all']['create_s'] * 1000:.0f} ms; "
                  f"per-flow process {one['per_flow_s'] * 1000:.1f} ms; local p50 {p50(one['local_s']) * 1000:.1f} ms "
                  f"vs per-call {p50(one['local_per_call_s']) * 1000:.1f} ms", flush=True)  # fmt: skip
    finally:
        await fabric.close()
    flows_n = 2 * args.remotes
    res: dict[str, Any] = {
        "runs": args.runs,
        "remotes": args.remotes,
        "flows": flows_n,
        "remote_create_s": {k: p50([x["remote"][k]["create_s"] for x in runs]) for k in runs[0]["remote"]},
        "remote_delete_s": {k: p50([x["remote"][k]["delete_s"] for x in runs]) for k in runs[0]["remote"]},
        "remote_processes": {k: runs[-1]["remote"][k]["ofctl_processes"] for k in runs[0]["remote"]},
        "per_flow_sample": args.sample,
        "per_flow_s": p50([x["per_flow_s"] for x in runs]),
        "per_flow_no_names_s": p50([x["per_flow_no_names_s"] for x in runs]),
        "locals": args.locals,
        "local_p50_s": p50([p50(x["local_s"]) for x in runs]),
        "local_p90_s": p50([statistics.quantiles(x["local_s"], n=10)[-1] for x in runs]),
        "local_per_call_p50_s": p50([p50(x["local_per_call_s"]) for x in runs]),
        "restart_open_s": p50([x["restart"]["open_s"] for x in runs]),
        "restart_open_and_list_s": p50([x["restart"]["open_and_list_s"] for x in runs]),
        "restart_ofctl_processes": runs[-1]["restart"]["ofctl_processes"],
    }
    res["per_flow_extrapolated_s"] = res["per_flow_s"] * flows_n
    return res


def report(r: dict[str, Any]) -> None:
    ms = 1000.0
    print(f"\nOVS fabric vs one process per call (medians of {r['runs']} runs; netdev datapath)")
    print(f"  {r['flows']:,} remote flows ({r['remotes']:,} remote interfaces), all callers at once: "
          f"{r['remote_create_s']['all'] * ms:.0f} ms to install ({r['remote_processes']['all']} ovs-ofctl processes), "
          f"{r['remote_delete_s']['all'] * ms:.0f} ms to remove")  # fmt: skip
    for k in ("128", "64", "32", "2"):
        print(f"    with {k:>3} concurrent callers (agent workers): {r['remote_create_s'][k] * ms:7.0f} ms "
              f"({r['remote_processes'][k]} processes)")  # fmt: skip
    print(f"  one ovs-ofctl add-flow process per flow: {r['per_flow_s'] * ms:.1f} ms/flow over {r['per_flow_sample']} "
          f"flows → {r['per_flow_extrapolated_s']:.1f} s for {r['flows']:,} flows (extrapolated); with --no-names "
          f"{r['per_flow_no_names_s'] * ms:.1f} ms/flow → {r['per_flow_no_names_s'] * r['flows']:.1f} s")  # fmt: skip
    print(f"  one local attachment end to end (port ready + 3 flows), {r['locals']} in a row: p50 "
          f"{r['local_p50_s'] * ms:.1f} ms, p90 {r['local_p90_s'] * ms:.1f} ms")  # fmt: skip
    print(f"    per-call (ovs-vsctl add-port, ovs-vsctl get ofport, 3 x ovs-ofctl add-flow): p50 "
          f"{r['local_per_call_p50_s'] * ms:.1f} ms")  # fmt: skip
    print(f"  restart on a switch with {r['remotes']:,} remote and {r['locals']} local interfaces: open "
          f"{r['restart_open_s'] * ms:.0f} ms, open + list + reconcile {r['restart_open_and_list_s'] * ms:.0f} ms "
          f"({r['restart_ofctl_processes']} ovs-ofctl process: one dump; nothing needed repair)")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--remotes", type=int, default=2500, help="remote interfaces (2 flows each)")
    ap.add_argument("--sample", type=int, default=200, help="flows installed one process each")
    ap.add_argument("--locals", type=int, default=30, help="local attachments per run")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    calibration.print_calibration()
    why = ovslab.missing()
    if why:
        print(f"bench/ovs.py: {why}", file=sys.stderr)
        return 2
    with ovslab.Lab(
        Path(tempfile.mkdtemp(prefix="kos-ovs-bench-")), ["bench"], prefix=f"kb{os.getpid() % 100000}"
    ) as lab:
        res = asyncio.run(run(args, lab.hosts[0]))
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
