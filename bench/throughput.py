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
then bisects. Reported per trial: achieved rates, latency percentiles, the CPU seconds
each process used (all share the machine's 2 cores), and the mean wall time of the apiserver's
store calls by operation (its `kos_storage_request_duration_seconds`).

Shapes: `small` = many small networks (--num-nets 100 --top-net-size 10); `large` =
the original driver's default (--num-nets 10 --top-net-size 100: every change fans
out to dozens of nodes). `--light`: p50/p99 create→ready at --rate 20.

`--storage`: the apiserver's store, a URL (`memory://`, `sqlite://STATE/kos.db`, `etcd://host:port`; STATE is
the trial's directory) or `etcd`: a fresh local etcd started for each trial in the trial's directory
(kos.testing.etcd.EtcdProcess), `--etcd-members` members (1 by default; `etcd:3` names the count per storage).
`STORE@DIR` runs that store's apiserver on the kos sources in DIR (PYTHONPATH=DIR; e.g. `etcd@../base/src`
with `git worktree add ../base main`): an A/B of the apiserver's code in the same run, the other processes
unchanged.
Repeat `--storage` to run every trial on each store in turn in one run (e.g. `--storage memory:// --storage
etcd --storage etcd:3`); the summary then prints each store's figures beside the first one's: holding rate,
apiserver CPU per driver operation (create or delete) and p50/p99 create→ready. With a started etcd the
members' CPU is reported as `etcd`. `etcd+tmpfs` (`etcd:3+tmpfs`) starts the members with their data in
/dev/shm: fsync then costs nothing and nothing is durable, like memory://; plain `etcd` is the durable figure.
`+gateway` (last: `etcd+gateway`, `etcd:3+tmpfs+gateway`) has the store reach that etcd through its JSON gateway
(`?transport=gateway`, kos.storage.etcd_gateway) instead of gRPC.
`STORE^VAR=VALUE` (repeatable, before any `@DIR`) starts that store's apiserver with the variable set, e.g.
`etcd^GRPC_EXPERIMENTS=-event_engine_client` to compare a gRPC setting in the same run.

`--tls`: the secure cluster instead of the plain one, as `kos up` runs it (`SecureCluster`: kos.cli.clusterpki's
identities, made once per run): `kos apiserver --tls-cert-file --tls-private-key-file --client-ca-file
--token-auth-file` (HTTPS, x509 and token authentication, the built-in authorization and node restriction);
the controller manager with its client certificate, the simulated nodes with their shared token kubeconfig
and one token per node (`--node-tokens`), the driver as a user in `kos:users` with a client certificate.
The probe listeners stay plain (`--insecure`) in both modes: only this script reads them. Without `--tls`
the apiserver runs `--insecure` (plain HTTP, no authentication). bench/tls.py runs both and reports
secure ÷ plain.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kos.pki import directory  # noqa: E402
from kos.pki.authority import issue_client  # noqa: E402
from kos.pki.kubeconfig import kubeconfig  # noqa: E402
from kos.testing.etcd import EtcdProcess  # noqa: E402
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


def etcd_calls(etcd: EtcdProcess) -> dict[str, float]:
    """gRPC calls every member has handled so far, by method (etcd's `grpc_server_handled_total`)."""
    out: dict[str, float] = {}
    for _, port in etcd.endpoints:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("grpc_server_handled_total{"):
                    method = line.split('grpc_method="', 1)[1].split('"', 1)[0]
                    out[method] = out.get(method, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def store_calls(
    server: APIServerProcess, tls: SecureCluster | None, keep: Path | None = None
) -> dict[str, tuple[float, float]]:
    """The apiserver's store calls so far by operation: (count, seconds) from kos_storage_request_duration_seconds
    (summed over resources); empty for an apiserver that lacks the metric (an older tree under `@DIR`). With `keep`,
    all the apiserver's metrics are kept there (apiserver.metrics)."""
    ctx = tls.context if tls is not None else None
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10, context=ctx) as r:
            text = r.read().decode()
    except urllib.error.URLError as e:  # (an older tree's policy, say): the trial goes on without the figure
        print(f"  (the apiserver's /metrics could not be read: {e})", flush=True)
        return {}
    if keep is not None:
        (keep / "apiserver.metrics").write_text(text)
    out: dict[str, tuple[float, float]] = {}
    for line in text.splitlines():
        for part, i in (("_count{", 0), ("_sum{", 1)):
            if line.startswith("kos_storage_request_duration_seconds" + part):
                op = line.split('operation="', 1)[1].split('"', 1)[0]
                got = list(out.get(op, (0.0, 0.0)))
                got[i] += float(line.rsplit(" ", 1)[1])
                out[op] = (got[0], got[1])
    return out


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


@functools.cache
def _has_flag(command: str, flag: str) -> bool:
    """Whether `kos <command> --help` lists `flag` (the secure flags arrive branch by branch)."""
    run = subprocess.run([sys.executable, "-m", "kos", command, "--help"], capture_output=True, text=True, check=False)
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", run.stdout) is not None


def _plain_listener() -> list[str]:
    """`--insecure` for the controller manager's and simulated nodes' probe listeners, where it exists: they are
    polled by this script, not on the measured path, in both modes."""
    return ["--insecure"] if _has_flag("controller-manager", "--insecure") else []


class SecureCluster:
    """What `--tls` trials run with: `kos up`'s identities (kos.cli.clusterpki: a CA, the apiserver's serving
    certificate, the controller manager's client certificate, one bearer token per simulated node and the
    nodes' shared token kubeconfig), made once in `state`; the driver is a user in `kos:users` with a client
    certificate. Kubeconfigs are written again for each trial's server URL."""

    NODES = [f"node-{i}" for i in range(100)]

    def __init__(self, state: Path) -> None:
        missing = [f"apiserver {f}" for f in ("--tls-cert-file", "--client-ca-file", "--token-auth-file")
                   if not _has_flag("apiserver", f)]  # fmt: skip
        missing += [f"{c} --kubeconfig" for c in ("controller-manager", "simnodes", "driver")
                    if not _has_flag(c, "--kubeconfig")]  # fmt: skip
        if missing or not _has_flag("simnodes", "--node-tokens"):
            raise SystemExit(f"--tls needs what this tree lacks: {', '.join(missing) or 'simnodes --node-tokens'}")
        self.state = state
        self.ids = self.prepare("https://127.0.0.1:1")
        ca = directory.load(self.ids.pki, directory.CA)
        self.driver = issue_client(ca, "kos:bench-driver", ["kos:users"])
        self.context = ssl.create_default_context(cafile=str(self.ids.ca_file))
        # this script reads the apiserver's /metrics, which the built-in policy gives to system:monitoring
        monitor = issue_client(ca, "kos:bench-monitor", ["system:monitoring"])
        crt, key = state / "monitor.crt", state / "monitor.key"
        crt.write_bytes(monitor.cert_pem())
        directory.write_private(key, monitor.key_pem(), force=True)
        self.context.load_cert_chain(crt, key)

    def prepare(self, server: str) -> Any:
        from kos.cli import clusterpki  # (issue 12: kos up's identities)

        return clusterpki.prepare(self.state, server, [], self.NODES)

    def apiserver_args(self) -> list[str]:
        crt, key = self.ids.cert(directory.APISERVER)
        return ["--tls-cert-file", str(crt), "--tls-private-key-file", str(key), "--client-ca-file",
                str(self.ids.ca_file), "--token-auth-file", str(self.ids.node_tokens)]  # fmt: skip

    def client_args(self, server: str, d: Path) -> dict[str, list[str]]:
        """Each client process's flags for the trial's `server`, the driver's kubeconfig written into `d`."""
        ids = self.prepare(server)
        driver = d / "driver.kubeconfig"
        directory.write_private(driver, kubeconfig(server, ids.ca_pem, self.driver, "kos:bench-driver"), force=True)
        return {"controller-manager": ["--kubeconfig", str(ids.controller_manager_kubeconfig)],
                "simnodes": ["--kubeconfig", str(ids.simnodes_kubeconfig), "--node-tokens", str(ids.node_tokens)],
                "driver": ["--kubeconfig", str(driver)]}  # fmt: skip


def _start_apiserver(storage: str, d: Path, tls: SecureCluster | None) -> APIServerProcess:
    if tls is None:  # (APIServerProcess adds --insecure where the tree has it)
        return APIServerProcess(storage, d / "apiserver.log", extra=["--log-level", "warning"]).wait_ready()
    server = APIServerProcess(storage, d / "apiserver.log", extra=["--log-level", "warning", *tls.apiserver_args()])
    server.url = server.url.replace("http://", "https://")
    server.wait_http(server.url + "/readyz", context=tls.context)
    return server


ETCD_MEMBERS = 1
"""Members of the etcd a storage of `etcd` starts (--etcd-members)."""
TMPFS = "+tmpfs"
"""`etcd+tmpfs`, `etcd:3+tmpfs`: the started members keep their data in /dev/shm (RAM: fsync is free, nothing is
durable), to compare with memory://, which fsyncs nothing either. The plain `etcd` figure is the durable one."""
GATEWAY = "+gateway"
"""A storage suffix: the store reaches the started etcd through its JSON gateway (`?transport=gateway`)."""


def _etcd_members(storage: str) -> int:
    """How many members `storage` asks this script to start: 0 for a URL, N for `etcd:N`, else --etcd-members."""
    if storage == "etcd":
        return ETCD_MEMBERS
    if storage.startswith("etcd:") and storage[5:].isdigit():
        return int(storage[5:])
    return 0


def trial(shape: str, rate: float, seconds: float, tmp: Path, storage: str, threads: int,
          profile: str = "", profile_dir: Path | None = None, criterion: str = "strict",
          tls: SecureCluster | None = None) -> dict[str, Any]:  # fmt: skip
    d = tmp / f"{shape}-{rate:g}-{time.time_ns()}"
    d.mkdir()
    storage, _, src = storage.partition("@")
    storage, _, env_spec = storage.partition("^")
    env = dict(kv.partition("=")[::2] for kv in env_spec.split("^")) if env_spec else {}
    storage, gateway = storage.removesuffix(GATEWAY), storage.endswith(GATEWAY)
    storage, tmpfs = storage.removesuffix(TMPFS), storage.endswith(TMPFS)
    members = _etcd_members(storage)
    # +tmpfs: the members' data directories in RAM (/dev/shm), so their fsyncs cost nothing: not durable
    etcd_dir = Path(tempfile.mkdtemp(prefix="kos-bench-etcd-", dir="/dev/shm")) if tmpfs and members else d / "etcd"
    etcd = EtcdProcess.cluster(etcd_dir, members=members) if members else None
    try:
        tag = (f"etcd{members}" if members else storage.split(":", 1)[0]) + ("-tmpfs" if tmpfs else "")
        tag += "-gateway" if gateway else ""
        url = etcd.url if etcd else storage
        if gateway:
            url += ("&" if "?" in url else "?") + "transport=gateway"
        t = _trial(shape, rate, seconds, d, url, threads, profile, profile_dir,
                   criterion, tls, etcd, tag + ("-ab" if src else ""), src, env)  # fmt: skip
        t["storage"] = (
            (storage if not members else f"etcd:{members}")
            + (TMPFS if tmpfs else "")
            + (GATEWAY if gateway else "")
            + (f"^{env_spec}" if env_spec else "")
            + (f"@{src}" if src else "")
        )
        return t
    finally:
        if etcd is not None:
            etcd.stop()
        if etcd_dir.is_relative_to("/dev/shm"):
            shutil.rmtree(etcd_dir, ignore_errors=True)


def _trial(shape: str, rate: float, seconds: float, d: Path, storage: str, threads: int, profile: str,
           profile_dir: Path | None, criterion: str, tls: SecureCluster | None,
           etcd: EtcdProcess | None, tag: str, src: str = "",
           env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    extra = dict(env or {})
    if src:  # the apiserver (only) runs the kos in `src`
        extra["PYTHONPATH"] = str(Path(src).resolve())
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)  # the apiserver (only) gets `STORE^VAR=VALUE`'s variables
    try:
        server = _start_apiserver(storage.replace("STATE", str(d)), d, tls)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    plain = {role: ["--server", server.url] for role in ("controller-manager", "simnodes", "driver")}
    client = plain if tls is None else tls.client_args(server.url, d)
    cm_port, sim_port = free_port(), free_port()
    cm = KosProcess(["controller-manager", *client["controller-manager"], "--metrics-listen", f"127.0.0.1:{cm_port}",
                     *_plain_listener(), "--log-level", "warning", *os.environ.get("BENCH_CM_ARGS", "").split()],
                    d / "cm.log")  # fmt: skip
    sim = KosProcess(["simnodes", *client["simnodes"], "--count", "100", "--listen", f"127.0.0.1:{sim_port}",
                      *_plain_listener(), "--log-level", "warning"], d / "sim.log")  # fmt: skip
    try:
        cm.wait_http(f"http://127.0.0.1:{cm_port}/healthz", timeout=60)
        sim.wait_http(f"http://127.0.0.1:{sim_port}/readyz", timeout=120)
        n = max(50, int(rate * seconds / 2))
        procs = {"apiserver": server.proc.pid, "controller-manager": cm.proc.pid, "simnodes": sim.proc.pid}
        etcd_pids = etcd.pids() if etcd is not None else []
        etcd_before = sum(cpu_seconds(p) for p in etcd_pids)
        calls_before = etcd_calls(etcd) if etcd is not None else {}
        store_before = store_calls(server, tls)
        before = {k: cpu_seconds(p) for k, p in procs.items()}
        out = d / "run"
        spy = None
        drv = subprocess.Popen(
            [sys.executable, "-m", "kos", "driver", *client["driver"], "--nodes", "node-:100", *SHAPES[shape],
             "--num-attachments", str(n), "--rate", str(rate), "--threads", str(threads), "--wait-after-delete", "10s",
             "--seed", "1", "--output", str(out), "--progress", "none", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=(d / "driver.log").open("wb"),
        )  # fmt: skip
        if profile and profile_dir is not None:  # py-spy on one process while the driver runs (collapsed stacks)
            pid = drv.pid if profile == "driver" else procs[profile]
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate", "250", "--nonblocking",
                                    "--format", "raw", "-o", str(profile_dir / f"{tag}-{shape}-{rate:g}-{profile}.txt")],
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
        if etcd_pids:
            cpu["etcd"] = sum(cpu_seconds(p) for p in etcd_pids) - etcd_before
        calls = {k: v - calls_before.get(k, 0.0) for k, v in (etcd_calls(etcd) if etcd is not None else {}).items()}
        watches = sim_counters(sim_port, d)
        store_after = store_calls(server, tls, d)
        zero = (0.0, 0.0)
        store_ms = {op: (sec - store_before.get(op, zero)[1]) / (calls - store_before.get(op, zero)[0]) * 1e3
                    for op, (calls, sec) in store_after.items() if calls > store_before.get(op, zero)[0]}  # fmt: skip
        if not (out / "summary.json").exists():
            raise RuntimeError(f"kos driver exited {drv.returncode} without a summary:\n"
                               + (d / "driver.log").read_text(errors="replace")[-3000:])  # fmt: skip
        s = json.loads((out / "summary.json").read_text())
        lat = s["latency_seconds"]["create_to_ready"]
        p99_all, missed = p99_with_misses(out)
        kept_up = s["achieved_rate"] >= 0.95 * rate
        holds = {"strict": kept_up and p99_all <= 1.0, "ready": kept_up and (lat["p99"] or 99.0) <= 1.0}
        return {"shape": shape, "rate": rate, "tls": tls is not None, "holds": holds[criterion], "holds_by": holds,
                "achieved_rate": s["achieved_rate"],
                "latency_seconds": s["latency_seconds"],
                "p99_counting_misses": p99_all if p99_all != math.inf else None, "missed": missed,
                "achieved_create_rate": s["achieved_create_rate"], "created": s["created"],
                "never_ready": s["never_ready"], "create_to_ready": lat, "avg_peers": s["plan"]["avg_peers"],
                "late_ops_percent": s["late_ops_percent"], "cpu_seconds": cpu, "wall_seconds": wall,
                "apiserver_cpu_per_op_us": cpu["apiserver"] / max(1, s["created"] + s["deleted"]) * 1e6,
                "cpu_per_op_us": {k: v / max(1, s["created"] + s["deleted"]) * 1e6 for k, v in cpu.items()},
                "etcd_calls_per_op": {k: v / max(1, s["created"] + s["deleted"]) for k, v in calls.items() if v},
                "store_call_ms": store_ms, "simnodes": watches}  # fmt: skip
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
          f"(wall {t['wall_seconds']:.0f}; apiserver {t['apiserver_cpu_per_op_us']:.0f} µs/op); simnodes: "
          + ", ".join(f"{k} {v:.0f}" for k, v in t.get("simnodes", {}).items())
          + ("; etcd calls per op: " + ", ".join(f"{k} {v:.2f}" for k, v in t["etcd_calls_per_op"].items())
             if t.get("etcd_calls_per_op") else "")
          + ("; store call ms (mean, the apiserver's view): "
             + ", ".join(f"{k} {v:.2f}" for k, v in sorted(t["store_call_ms"].items())) if t.get("store_call_ms") else ""),
          flush=True)  # fmt: skip


def search(shape: str, start: float, seconds: float, tmp: Path, storage: str, threads: int,
           criterion: str, tls: SecureCluster | None = None) -> dict[str, Any]:  # fmt: skip
    trials = []
    lo, hi = 0.0, None
    rate = start
    while hi is None:
        t = trial(shape, rate, seconds, tmp, storage, threads, criterion=criterion, tls=tls)
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
        t = trial(shape, rate, seconds, tmp, storage, threads, criterion=criterion, tls=tls)
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
    ap.add_argument(
        "--storage",
        action="append",
        help="apiserver storage: a URL (STATE = the trial's directory), "
        "or etcd / etcd:N to start N members per trial; repeat to compare stores in one run",
    )
    ap.add_argument("--etcd-members", type=int, default=1, help="members of the etcd that `--storage etcd` starts")
    ap.add_argument("--light-trials", type=int, default=3, help="trials at --rate 20 with --light")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--tls", action="store_true", help="HTTPS with client-certificate identities, authorization on")
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
    global ETCD_MEMBERS
    ETCD_MEMBERS = args.etcd_members
    calibration.print_calibration()
    storages = args.storage or ["memory://"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = args.keep
        tls = SecureCluster(tmp / "secure") if args.tls else None
        for storage in storages:
            if len(storages) > 1:
                print(f"=== storage {storage}", flush=True)
            results[storage] = run_storage(args, storage, tmp, tls)
    if len(storages) > 1:
        compare(results, storages)
    if args.json:
        args.json.write_text(json.dumps(results if len(storages) > 1 else results[storages[0]], indent=2))
    return 0


def run_storage(args: argparse.Namespace, storage: str, tmp: Path, tls: SecureCluster | None) -> dict[str, Any]:
    """Every trial the flags ask for, on one store; results by shape (and `light`)."""
    results: dict[str, Any] = {}
    shapes = ["small", "large"] if args.shape == "both" else ([] if args.shape == "none" else [args.shape])
    if args.rates:
        for shape in shapes:
            results[shape] = {"trials": []}
            for rate in (float(r) for r in args.rates.split(",")):
                t = trial(shape, rate, args.seconds, tmp, storage, args.threads, args.profile,
                          args.profile_dir, args.criterion, tls)  # fmt: skip
                show(t)
                results[shape]["trials"].append(t)
        shapes = []
    for shape in shapes:
        print(f"== {shape} networks: searching the highest rate that holds", flush=True)
        r = search(shape, args.start, args.seconds, tmp, storage, args.threads, args.criterion, tls)
        results[shape] = r
        print(
            f"   {shape}: holds ({args.criterion}) at --rate {r['best_rate']:.0f}: "
            f"{r['best_creations_per_s']:.0f} creations/s achieved"
        )
    if args.light:
        print("== light load: --rate 20", flush=True)
        light = [trial("small", 20, 30, tmp, storage, 1, args.profile, args.profile_dir, tls=tls)
                 for _ in range(args.light_trials)]  # fmt: skip
        for t in light:
            show(t)
        results["light"] = light
    return results


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    if not xs:
        return math.nan
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def compare(results: dict[str, Any], storages: list[str]) -> None:
    """Each store's figures beside the first one's: holding rate, apiserver CPU per operation, light-load p50."""
    base = storages[0]

    def figures(r: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for shape in ("small", "large"):
            if shape in r:
                trials = r[shape]["trials"]
                held = [t for t in trials if t["holds"]]
                out[f"{shape} holding rate (ops/s)"] = r[shape].get(
                    "best_rate", max((t["rate"] for t in held), default=0)
                )
                out[f"{shape} best achieved (ops/s)"] = max((t["achieved_rate"] for t in trials), default=0)
                for t in trials:  # CPU per operation falls as the rate rises: compare it rate by rate
                    out[f"{shape} apiserver µs/op at --rate {t['rate']:g}"] = t["apiserver_cpu_per_op_us"]
                    if "cpu_per_op_us" in t:
                        out[f"{shape} all processes µs/op at --rate {t['rate']:g}"] = sum(t["cpu_per_op_us"].values())
        if "light" in r:
            out["light p50 create→ready (ms, median)"] = _median(
                [t["create_to_ready"]["p50"] * 1e3 for t in r["light"]]
            )
            out["light p99 create→ready (ms, median)"] = _median(
                [t["create_to_ready"]["p99"] * 1e3 for t in r["light"]]
            )
            out["light apiserver µs/op (median)"] = _median([t["apiserver_cpu_per_op_us"] for t in r["light"]])
        return out

    print(f"== comparison (ratio to {base})")
    b = figures(results[base])
    for storage in storages:
        f = figures(results[storage])
        for k, v in f.items():
            if k not in b:
                continue  # a rate the first store was not tried at
            ratio = v / b[k] if b[k] else math.nan
            print(f"  {storage:12s} {k:42s} {v:9.1f}  ×{ratio:.2f}")
    ceilings(results, storages)


def ceilings(results: dict[str, Any], storages: list[str]) -> None:
    """What etcd's own CPU allows on these cores: the holding rate's ratio to the first store's, at best.

    The CPU the system can get is the most any trial of the first store's search used (its failing trials
    saturate the machine: `cores`, in CPU-seconds per second). A store whose kos processes cost exactly what
    the first store's cost per operation at its holding rate (`base`, µs, etcd excluded), plus its etcd
    members' CPU per operation (`etcd`), cannot hold more than cores × 1e6 / (base + etcd) operations per
    second, and its ratio to the first store's holding rate is at most that over the holding rate. etcd's CPU
    per operation is taken at the store's highest-rate trial (the most batching, so the least per operation),
    which makes the bound generous.
    """
    base = results[storages[0]]
    for shape in ("small", "large"):
        if shape not in base:
            continue
        tried = [t for t in base[shape]["trials"] if "cpu_per_op_us" in t]
        held = [t for t in tried if t["holds"]]
        if not held:
            continue
        top = max(held, key=lambda t: t["rate"])
        base_us = sum(v for k, v in top["cpu_per_op_us"].items() if k != "etcd")
        cores = max(sum(t["cpu_seconds"].values()) / t["wall_seconds"] for t in tried)
        print(
            f"== what etcd's own CPU allows ({shape}; {storages[0]} holds {top['rate']:g} ops/s, its processes using "
            f"{base_us:.0f} µs of CPU per operation there; the most CPU any of its trials got: {cores:.2f} cores)"
        )
        for storage in storages[1:]:
            trials = [
                t for t in results[storage].get(shape, {}).get("trials", []) if "etcd" in t.get("cpu_per_op_us", {})
            ]
            if not trials:
                continue
            fastest = max(trials, key=lambda t: t["achieved_rate"])
            etcd_us = fastest["cpu_per_op_us"]["etcd"]
            ceiling = cores * 1e6 / (base_us + etcd_us)
            print(
                f"  {storage:12s} etcd {etcd_us:6.0f} µs/op at --rate {fastest['rate']:g}: at most {ceiling:.0f} "
                f"ops/s, a holding ratio of at most {ceiling / top['rate']:.2f}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
