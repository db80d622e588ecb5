#!/usr/bin/env python3
"""Benchmark sustained NA creation with 100 simulated nodes: the highest rate that holds, and light-load latency.

    .venv/bin/python bench/throughput.py [--shape small|large|both] [--light] [--seconds 15] [--json out.json]

For each workload shape the driver runs at a target rate of operations (creates +
deletes; in the cruise phase each create pairs with a delete, so creations/s is half
the rate) against a fresh `kos up`-style cluster (apiserver on the memory store,
controller manager, `kos simnodes --count 100`, each its own process, plus the driver
process). A rate *holds* when the achieved rate is at least 95% of the target and
p99 create→ready is at most 1 s. Two readings of "p99", both reported for every trial:
`strict` (the default for the search): an NA that never became ready (deleted first, or
still not ready at the end) counts as infinitely late, so at most 1% may miss; `ready`:
p99 over the NAs that became ready, as the driver's histogram (and the original's) has
it, with the misses reported beside it. The search doubles the rate until it fails,
then bisects. Reported per trial: achieved rates, latency percentiles, and the CPU seconds
each process used (all share the machine's 2 cores).

Shapes: `small` = many small networks (--num-nets 100 --top-net-size 10); `large` =
the original driver's default (--num-nets 10 --top-net-size 100: every change fans
out to dozens of nodes). `--light`: p50/p99 create→ready at --rate 20.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kos.testing.process import APIServerProcess, KosProcess, free_port  # noqa: E402
from kos.util import calibration  # noqa: E402

SHAPES = {
    "small": ["--num-nets", "100", "--top-net-size", "10"],
    "large": ["--num-nets", "10", "--top-net-size", "100"],
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def p99_with_misses(run: Path) -> tuple[float, int]:
    """p99 create→ready over every NA created, never-ready ones counted as infinite; and how many missed."""
    lat: list[float] = []
    with open(run / "attachments.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["failed"] == "True":
                continue
            lat.append(float(row["to_ready_s"]) if row["to_ready_s"] else math.inf)
    if not lat:
        return math.inf, 0
    lat.sort()
    return lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)], sum(1 for v in lat if v == math.inf)


SIM_COUNTERS = {
    "kos_simnodes_watch_events_received": "watch_events",
    "kos_simnodes_list_objects_received": "list_objects",
    "kos_agent_vni_watch_starts_total": "vni_watch_starts",
    "kos_agent_vni_watch_stops_total": "vni_watch_stops",
    "kos_agent_vni_watch_initial_objects_total": "vni_watch_initial_objects",
}


def sim_counters(port: int, keep: Path) -> dict[str, float]:
    """The simulated nodes' watch figures (summed over labels); a counter this version lacks is left out.

    All their metrics are kept in the trial's directory (simnodes.metrics).
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    (keep / "simnodes.metrics").write_text(text)
    out: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        short = SIM_COUNTERS.get(name)
        if name == "kos_agent_fabric_latency_seconds_count":  # fabric calls by operation
            short = line.split('op="', 1)[1].split('"', 1)[0] + ("" if 'err="ok"' in line else " failed")
        if short is not None and not line.startswith("#"):
            out[short] = out.get(short, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def trial(shape: str, rate: float, seconds: float, tmp: Path, storage: str, threads: int,
          profile: str = "", profile_dir: Path | None = None, criterion: str = "strict") -> dict[str, Any]:  # fmt: skip
    d = tmp / f"{shape}-{rate:g}-{time.time_ns()}"
    d.mkdir()
    server = APIServerProcess(storage.replace("STATE", str(d)), d / "apiserver.log",
                              extra=["--log-level", "warning"]).wait_ready()  # fmt: skip
    cm_port, sim_port = free_port(), free_port()
    cm = KosProcess(["controller-manager", "--server", server.url, "--metrics-listen", f"127.0.0.1:{cm_port}",
                     "--log-level", "warning", *os.environ.get("BENCH_CM_ARGS", "").split()], d / "cm.log")  # fmt: skip
    sim = KosProcess(["simnodes", "--server", server.url, "--count", "100", "--listen", f"127.0.0.1:{sim_port}",
                      "--log-level", "warning"], d / "sim.log")  # fmt: skip
    try:
        cm.wait_http(f"http://127.0.0.1:{cm_port}/healthz", timeout=60)
        sim.wait_http(f"http://127.0.0.1:{sim_port}/readyz", timeout=120)
        n = max(50, int(rate * seconds / 2))
        procs = {"apiserver": server.proc.pid, "controller-manager": cm.proc.pid, "simnodes": sim.proc.pid}
        before = {k: cpu_seconds(p) for k, p in procs.items()}
        out = d / "run"
        spy = None
        drv = subprocess.Popen(
            [sys.executable, "-m", "kos", "driver", "--server", server.url, "--nodes", "node-:100", *SHAPES[shape],
             "--num-attachments", str(n), "--rate", str(rate), "--threads", str(threads), "--wait-after-delete", "10s",
             "--seed", "1", "--output", str(out), "--progress", "none", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if profile and profile_dir is not None:  # py-spy on one process while the driver runs (collapsed stacks)
            pid = drv.pid if profile == "driver" else procs[profile]
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate", "250", "--nonblocking",
                                    "--format", "raw", "-o", str(profile_dir / f"{shape}-{rate:g}-{profile}.txt")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        t0 = time.monotonic()
        drv_cpu = 0.0
        while drv.poll() is None:
            try:
                drv_cpu = cpu_seconds(drv.pid)
            except OSError:
                pass
            time.sleep(0.2)
        wall = time.monotonic() - t0
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=30)
        cpu = {k: cpu_seconds(p) - before[k] for k, p in procs.items()}
        cpu["driver"] = drv_cpu
        watches = sim_counters(sim_port, d)
        s = json.loads((out / "summary.json").read_text())
        lat = s["latency_seconds"]["create_to_ready"]
        p99_all, missed = p99_with_misses(out)
        kept_up = s["achieved_rate"] >= 0.95 * rate
        holds = {"strict": kept_up and p99_all <= 1.0, "ready": kept_up and (lat["p99"] or 99.0) <= 1.0}
        return {"shape": shape, "rate": rate, "holds": holds[criterion], "holds_by": holds,
                "achieved_rate": s["achieved_rate"],
                "latency_seconds": s["latency_seconds"],
                "p99_counting_misses": p99_all if p99_all != math.inf else None, "missed": missed,
                "achieved_create_rate": s["achieved_create_rate"], "created": s["created"],
                "never_ready": s["never_ready"], "create_to_ready": lat, "avg_peers": s["plan"]["avg_peers"],
                "late_ops_percent": s["late_ops_percent"], "cpu_seconds": cpu, "wall_seconds": wall,
                "simnodes": watches}  # fmt: skip
    finally:
        for p in (sim, cm, server):
            p.stop()


def show(t: dict[str, Any]) -> None:
    lat = t["create_to_ready"]
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in t["cpu_seconds"].items())
    by = t["holds_by"]
    verdict = "/".join(f"{k} {'HOLDS' if v else 'fails'}" for k, v in by.items())
    print(f"  {t['shape']:5s} rate {t['rate']:7.0f}: {verdict}  achieved "
          f"{t['achieved_rate']:7.1f} ops/s ({t['achieved_create_rate']:6.1f} creates/s), create→ready p50 "
          f"{(lat['p50'] or 0) * 1000:6.1f} ms p99 {(lat['p99'] or 0) * 1000:7.1f} ms (with misses "
          f"{'inf' if t['p99_counting_misses'] is None else format(t['p99_counting_misses'] * 1000, '.1f')} ms), "
          f"never ready {t['never_ready']}, late ops {t['late_ops_percent']:.0f}%; CPU s: {cpu} "
          f"(wall {t['wall_seconds']:.0f}); simnodes: "
          + ", ".join(f"{k} {v:.0f}" for k, v in t.get("simnodes", {}).items()), flush=True)  # fmt: skip


def search(shape: str, start: float, seconds: float, tmp: Path, storage: str, threads: int,
           criterion: str) -> dict[str, Any]:  # fmt: skip
    trials = []
    lo, hi = 0.0, None
    rate = start
    while hi is None:
        t = trial(shape, rate, seconds, tmp, storage, threads, criterion=criterion)
        show(t)
        trials.append(t)
        if t["holds"]:
            lo, rate = rate, rate * 2
        else:
            hi = rate
    for _ in range(3):
        if hi is None or hi - lo <= max(20, 0.08 * hi):
            break
        rate = (lo + hi) / 2 if lo else hi / 2
        t = trial(shape, rate, seconds, tmp, storage, threads, criterion=criterion)
        show(t)
        trials.append(t)
        if t["holds"]:
            lo = rate
        else:
            hi = rate
    best = max((t for t in trials if t["holds"]), key=lambda t: t["rate"], default=None)
    return {"shape": shape, "criterion": criterion, "best_rate": lo,
            "best_creations_per_s": best["achieved_create_rate"] if best else 0.0, "best": best, "trials": trials}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["small", "large", "both", "none"], default="both")
    ap.add_argument("--light", action="store_true", help="also measure create→ready at --rate 20")
    ap.add_argument("--seconds", type=float, default=15.0, help="cruise length of each trial")
    ap.add_argument("--start", type=float, default=200.0, help="first rate tried (ops/s)")
    ap.add_argument("--threads", type=int, default=16, help="driver workers")
    ap.add_argument("--storage", default="memory://", help="apiserver storage (STATE = the trial's directory)")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--profile",
        choices=["apiserver", "controller-manager", "simnodes", "driver"],
        default="",
        help="record a py-spy profile of this process in every trial (collapsed stacks)",
    )
    ap.add_argument("--rates", default="", help="comma-separated rates to run once each instead of a search")
    ap.add_argument("--profile-dir", type=Path, default=Path("."))
    ap.add_argument("--keep", type=Path, help="keep each trial's directory (logs, the driver's CSVs) under this one")
    ap.add_argument(
        "--criterion",
        choices=["strict", "ready"],
        default="strict",
        help="which reading of p99 the search uses (both are reported)",
    )
    args = ap.parse_args()
    calibration.print_calibration()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = args.keep
        shapes = ["small", "large"] if args.shape == "both" else ([] if args.shape == "none" else [args.shape])
        if args.rates:
            for shape in shapes:
                results[shape] = {"trials": []}
                for rate in (float(r) for r in args.rates.split(",")):
                    t = trial(shape, rate, args.seconds, tmp, args.storage, args.threads, args.profile,
                              args.profile_dir, args.criterion)  # fmt: skip
                    show(t)
                    results[shape]["trials"].append(t)
            shapes = []
        for shape in shapes:
            print(f"== {shape} networks: searching the highest rate that holds", flush=True)
            r = search(shape, args.start, args.seconds, tmp, args.storage, args.threads, args.criterion)
            results[shape] = r
            print(
                f"   {shape}: holds ({args.criterion}) at --rate {r['best_rate']:.0f}: "
                f"{r['best_creations_per_s']:.0f} creations/s achieved"
            )
        if args.light:
            print("== light load: --rate 20", flush=True)
            light = [trial("small", 20, 30, tmp, args.storage, 1) for _ in range(3)]
            for t in light:
                show(t)
            results["light"] = light
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
