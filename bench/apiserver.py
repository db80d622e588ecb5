#!/usr/bin/env python3
"""Benchmark the API server: NA creates per second over HTTP, and watch deliveries per second.

    .venv/bin/python bench/apiserver.py [--runs 3] [--quick] [--json out.json]

1. Creates: `kos apiserver --storage memory://` (and sqlite://, for reference) in its own
   process on core 0; a load generator on core 1 (`wrk` with a Lua script that
   gives every request a unique name, or an aiohttp client when wrk is missing)
   POSTs NetworkAttachments over keep-alive connections. Reported: creates/s
   (every response checked to be 201, and the server's object count checked).
2. Watch fan-out: an apiserver (memory store) on core 0 holds NAs in V VNIs; W
   watch connections from another process on core 1 each select one VNI with
   `fieldSelector=status.addressVNI=<v>` (the agents' per-VNI watch), so W/V
   watchers match each event. The server then changes E NAs as fast as it can
   (written straight into its store, round-robin over VNIs) and the watch client
   counts every event it receives. Reported: deliveries/s (end to end) and the
   server's CPU time per event. Run with W=1,000 and W=10,000 at 10 matching
   watchers per event: if fan-out cost follows the matching watchers, the two
   agree; a third run selects by label instead (not indexed) to show the cost of
   evaluating every watcher.
Figures are medians over --runs runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from kos.util import calibration

ROOT = Path(__file__).resolve().parent.parent
NA_PATH = "/apis/network.example.com/v1alpha1/namespaces/{ns}/networkattachments"

WRK_SCRIPT = r"""
local counter = 0
local thread_id = 0
local bad = 0
function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end
function init(args)
  n = 0
end
request = function()
  n = n + 1
  local body = '{"apiVersion":"network.example.com/v1alpha1","kind":"NetworkAttachment","metadata":{"name":"na-'
    .. thread_id .. '-' .. n .. '","labels":{"app":"bench"}},"spec":{"node":"node-' .. (n % 100) ..
    '","subnet":"subnet-a"}}'
  return wrk.format("POST", wrk.path, {["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
  if status ~= 201 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("BAD %d\n", bad))
end
"""


def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else []


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_apiserver(storage: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [*pin(0), sys.executable, "-m", "kos", "apiserver", "--storage", storage, "--listen", f"127.0.0.1:{port}",
           "--log-level", "warning", "--insecure"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    import urllib.request

    for _ in range(400):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"apiserver did not start: {log.read_text()[-2000:]}")


def count_objects(port: int, ns: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{NA_PATH.format(ns=ns)}?limit=1", timeout=30) as r:
        body = json.load(r)
    return len(body["items"]) + int(body["metadata"].get("remainingItemCount", 0))


# --- 1. creates -----------------------------------------------------------------------------------


def creates_with_wrk(port: int, ns: str, seconds: float, conns: int, tmp: Path) -> tuple[float, int]:
    script = tmp / "create.lua"
    script.write_text(WRK_SCRIPT)
    url = f"http://127.0.0.1:{port}{NA_PATH.format(ns=ns)}"
    out = subprocess.run([*pin(1), "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = int(re.search(r"BAD (\d+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad or non2xx:
        raise RuntimeError(f"{bad} creates were not answered 201:\n{out}")
    return rate, total


def creates_with_aiohttp(port: int, ns: str, seconds: float, conns: int) -> tuple[float, int]:
    code = f"""
import asyncio, json, time, aiohttp, uvloop
async def main():
    url = "http://127.0.0.1:{port}{NA_PATH.format(ns=ns)}"
    n = 0; bad = 0
    stop = time.perf_counter() + {seconds}
    async def worker(w):
        nonlocal n, bad
        async with aiohttp.ClientSession() as s:
            i = 0
            while time.perf_counter() < stop:
                body = {{"metadata": {{"name": f"na-{{w}}-{{i}}"}}, "spec": {{"node": "node-1", "subnet": "subnet-a"}}}}
                async with s.post(url, json=body) as r:
                    await r.read()
                    n += 1; bad += r.status != 201
                i += 1
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range({conns})))
    print(json.dumps({{"rate": n / (time.perf_counter() - t0), "total": n, "bad": bad}}))
uvloop.run(main())
"""
    out = subprocess.run([*pin(1), sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    res = json.loads(out)
    if res["bad"]:
        raise RuntimeError(f"{res['bad']} creates were not answered 201")
    return float(res["rate"]), int(res["total"])


def bench_creates(storage: str, seconds: float, conns: int, tmp: Path, client: str) -> dict[str, Any]:
    port = free_port()
    server = start_apiserver(storage, port, tmp / f"apiserver-{port}.log")
    try:
        ns = "bench"
        if client == "wrk":
            rate, total = creates_with_wrk(port, ns, seconds, conns, tmp)
        else:
            rate, total = creates_with_aiohttp(port, ns, seconds, conns)
        stored = count_objects(port, ns)
        if not total <= stored <= total + conns:  # requests in flight when the client stopped still land
            raise RuntimeError(f"{total} creates answered 201 but {stored} objects are stored")
        return {"creates_per_s": rate, "creates": total}
    finally:
        server.terminate()
        server.wait()


# --- 2. watch fan-out -----------------------------------------------------------------------------

FANOUT_SERVER = r"""
import asyncio, json, resource, sys, time
import uvloop
from kos.api import codec
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
from kos.storage.memory import MemoryStore
from kos.testing.apiserver import running_apiserver

PORT, VNIS, PER_VNI = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
SERVER = {}
if len(sys.argv) > 4:  # bench/tls.py: argv[4] is a script whose server_options(*argv[5:]) gives ssl= (and gate=)
    import runpy
    SERVER = runpy.run_path(sys.argv[4])["server_options"](*sys.argv[5:])
from kos.util import gctune
gctune.tune()  # as `kos apiserver` does

def obj(v, i, gen):
    return NetworkAttachment(
        metadata=ObjectMeta(name=f"na-{v}-{i}", namespace="bench", uid=f"u-{v}-{i}", labels={"vni": str(v)}),
        spec=NetworkAttachmentSpec(node=f"node-{i}", subnet="s"),
        status=NetworkAttachmentStatus(ipv4=f"10.{v // 256}.{v % 256}.{i + 2}", address_vni=v, host_ip="192.0.2.1",
                                       ifc_name=f"gen{gen}"))

async def main():
    async with running_apiserver(port=PORT, watch_cache_size=1_000_000, check_cache=False, **SERVER) as server:
        store = getattr(server.store, "inner", server.store)  # the bare store: the writer is not what is measured
        revs = {}
        for v in range(1, VNIS + 1):
            for i in range(PER_VNI):
                key = f"/networkattachments/bench/na-{v}-{i}"
                revs[key] = await store.create(key, codec.encode(obj(v, i, 0)))
        await server.cacher.wait_for(await store.current_revision())
        print(json.dumps({"rv": server.cacher.revision}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd = json.loads(line)
            events = cmd["events"]
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            for n in range(events):
                v = n % VNIS + 1
                i = (n // VNIS) % PER_VNI
                key = f"/networkattachments/bench/na-{v}-{i}"
                revs[key] = await store.update(key, codec.encode(obj(v, i, n + 1)), revs[key])
                if n % 64 == 63:
                    await asyncio.sleep(0)  # let the watch handlers write between bursts
            produced = time.perf_counter() - t0
            # wait until every watcher's buffer is drained to the sockets
            while any(w.buffer for c in server.cacher.caches.values() for w in c.watchers.all()):
                await asyncio.sleep(0.001)
            print(json.dumps({"produced_s": produced, "cpu_s": time.process_time() - cpu0}), flush=True)

uvloop.run(main())
"""


class _Counter(asyncio.Protocol):
    def __init__(self, total: list[int], path: str, done: asyncio.Event, target: list[int]) -> None:
        self.total, self.path, self.done, self.target = total, path, done, target
        self.carry = b""

    def connection_made(self, transport: Any) -> None:
        transport.write(f"GET {self.path} HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        buf = self.carry + data
        n = buf.count(b'{"type":"')
        self.carry = buf[-8:]
        self.carry = self.carry if b'{"type":"' not in self.carry else b""
        self.total[0] += n
        if self.total[0] >= self.target[0]:
            self.done.set()


async def fanout_client(port: int, rv: str, paths: list[str], server: subprocess.Popen[str], events: int,
                        expected: int, ssl: Any = None) -> dict[str, float]:  # fmt: skip
    loop = asyncio.get_running_loop()
    total = [0]
    target = [expected]
    done = asyncio.Event()
    transports = []
    for i in range(0, len(paths), 500):
        batch = paths[i : i + 500]
        conns = await asyncio.gather(*(loop.create_connection(lambda p=p: _Counter(total, p, done, target),  # type: ignore[misc]
                                                              "127.0.0.1", port, ssl=ssl) for p in batch))  # fmt: skip
        transports += [t for t, _ in conns]
    await asyncio.sleep(1.0)  # all watches registered
    assert server.stdin is not None and server.stdout is not None
    t0, own0, server0 = time.perf_counter(), time.process_time(), process_cpu(server.pid)
    server.stdin.write(json.dumps({"events": events}) + "\n")
    server.stdin.flush()
    await asyncio.wait_for(done.wait(), 300)
    elapsed, own, server_cpu = time.perf_counter() - t0, time.process_time() - own0, process_cpu(server.pid) - server0
    stats = json.loads(await loop.run_in_executor(None, server.stdout.readline))
    for t in transports:
        t.close()
    if total[0] != expected:
        raise RuntimeError(f"received {total[0]} events, expected {expected}")
    return {"deliveries": total[0], "seconds": elapsed, "deliveries_per_s": total[0] / elapsed,
            "server_cpu_us_per_event": stats["cpu_s"] / events * 1e6,
            "client_cpu_us_per_event": own / events * 1e6, "server_cpu_us_per_event_end_to_end": server_cpu / events * 1e6}  # fmt: skip


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_fanout(watchers: int, vnis: int, events: int, indexed: bool, tmp: Path,
                 server_options: Sequence[str] = (), ssl: Any = None,
                 client: Callable[..., Coroutine[Any, Any, dict[str, float]]] = fanout_client) -> dict[str, Any]:  # fmt: skip
    """`server_options`: a script and its arguments giving the server's ssl and gate (bench/tls.py); `ssl`:
    the watch connections' client context; `client`: what opens the watches (given `paths`, their HTTP watch
    paths), starts the events and counts the deliveries, with `fanout_client`'s signature and answer."""
    port = free_port()
    per_vni = 4
    server = subprocess.Popen([*pin(0), sys.executable, "-c", FANOUT_SERVER, str(port), str(vnis), str(per_vni),
                               *server_options], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        rv = json.loads(server.stdout.readline())["rv"]
        base = NA_PATH.format(ns="bench")
        sel = "fieldSelector=status.addressVNI%3D{v}" if indexed else "labelSelector=vni%3D{v}"
        paths = [f"{base}?watch=1&resourceVersion={rv}&{sel.format(v=w % vnis + 1)}" for w in range(watchers)]
        matching = watchers // vnis
        return asyncio.run(client(port, str(rv), paths, server, events, events * matching, ssl)) | {
            "watchers": watchers, "matching_per_event": matching, "indexed": indexed}  # fmt: skip
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0, help="duration of each create run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--events", type=int, default=20_000, help="events per fan-out run")
    ap.add_argument("--client", choices=["wrk", "aiohttp"], default="wrk" if shutil.which("wrk") else "aiohttp")
    ap.add_argument("--quick", action="store_true", help="one short run of each (for a smoke test)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    calibration.print_calibration()
    if args.quick:
        args.runs, args.seconds, args.events = 1, 2.0, 2000
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "client": args.client}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)

        def median_of(fn: Any, key: str) -> dict[str, Any]:
            runs = [fn() for _ in range(args.runs)]
            med = statistics.median(r[key] for r in runs)
            return {"median": med, "runs": runs}

        print(f"== creates over HTTP ({args.client}, {args.connections} connections, {args.seconds}s x {args.runs})")
        for storage in ("memory://", f"sqlite://{tmp}/state-{{}}.db"):
            label = storage.split(":")[0]
            counter = iter(range(1000))
            r = median_of(lambda st=storage, c=counter: bench_creates(st.format(next(c)), args.seconds,
                                                                      args.connections, tmp, args.client),
                          "creates_per_s")  # fmt: skip
            results[f"creates_{label}"] = r
            print(f"  {label:8s} {r['median']:9.0f} creates/s   (runs: "
                  + ", ".join(f"{x['creates_per_s']:.0f}" for x in r["runs"]) + ")")  # fmt: skip
        print(f"== watch fan-out ({args.events} events per run, medians of {args.runs})")
        for name, watchers, vnis, indexed in (("1k", 1000, 100, True), ("10k", 10_000, 1000, True),
                                              ("1k-unindexed", 1000, 100, False)):  # fmt: skip
            r = median_of(
                lambda w=watchers, v=vnis, i=indexed: bench_fanout(w, v, args.events, i, tmp), "deliveries_per_s"
            )
            cpu = statistics.median(x["server_cpu_us_per_event"] for x in r["runs"])
            r["server_cpu_us_per_event"] = cpu
            results[f"fanout_{name}"] = r
            print(f"  {watchers:6d} watchers, {watchers // vnis} match each event, "
                  f"{'field selector (indexed)' if indexed else 'label selector (not indexed)'}: "
                  f"{r['median']:9.0f} deliveries/s, server CPU {cpu:6.1f} µs/event")  # fmt: skip
        a, b = results["fanout_1k"], results["fanout_10k"]
        print(f"  10k/1k watchers: deliveries/s ratio {b['median'] / a['median']:.2f}, "
              f"CPU per event ratio {b['server_cpu_us_per_event'] / a['server_cpu_us_per_event']:.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
