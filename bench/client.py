#!/usr/bin/env python3
"""Microbenchmark the client's hot paths: the CPU of one call, and of one decoded watch event.

    .venv/bin/python bench/client.py [--runs 5] [--src other/src ...]

A canned server in another process (plain asyncio, so its cost is not measured)
answers every GET with one NetworkAttachment (keep-alive, Content-Length) and
every watch with E event lines (chunked, 64 lines a chunk, then the end). The
client process measures its own CPU time (`time.process_time`):

- calls: N `Client.get` calls, 32 at a time, over the default transport;
- watch: one `Client.watch` reading E events (every line distinct);
- shared watch: 10 watches of one `Client(share_events=True)` reading the same E lines
  (the simulated nodes' case: one decode, ten deliveries).

Reported per figure: the median over --runs of µs of client CPU per call / per event.
With several `--src` trees (e.g. a worktree of the commit before a change, and this
one), the runs are interleaved (A B A B ...) so both see the same machine state.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import asyncio, sys, uvloop
sys.path.insert(0, sys.argv[2])
from kos.api import codec
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
EVENTS = int(sys.argv[1])

def na(i):
    return NetworkAttachment(metadata=ObjectMeta(name=f"na-{i}", namespace="ns", resource_version=str(i + 1),
                             uid=f"u-{i}", labels={"app": "bench"}),
                             spec=NetworkAttachmentSpec(node=f"node-{i % 100}", subnet="subnet-a"),
                             status=NetworkAttachmentStatus(ipv4=f"10.0.{i // 250 % 250}.{i % 250 + 2}",
                             address_vni=7, host_ip="192.0.2.1", ifc_name=f"kos{i}", mac_address="02:00:00:00:00:01"))
ONE = codec.encode(na(0))
GET = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(ONE), ONE)
lines = [b'{"type":"MODIFIED","object":' + codec.encode(na(i)) + b"}\n" for i in range(EVENTS)]
chunks = [b"".join(lines[i:i + 64]) for i in range(0, EVENTS, 64)]
WATCH = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
         + b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")

class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            self.t.write(WATCH if b"watch=" in head.split(b"\r\n", 1)[0] else GET)

async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    print(s.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().connect_read_pipe(asyncio.Protocol, sys.stdin)
    await asyncio.sleep(3600)
uvloop.run(main())
"""

CLIENT = r"""
import asyncio, json, sys, time, uvloop
sys.path.insert(0, sys.argv[1])
from kos.api.types import NetworkAttachment
from kos.client.rest import Client
import kos
assert kos.__file__.startswith(sys.argv[1]), (kos.__file__, sys.argv[1])
url, calls, events = f"http://127.0.0.1:{sys.argv[2]}", int(sys.argv[3]), int(sys.argv[4])

async def main():
    out = {}
    async with Client(url) as c:
        await c.get(NetworkAttachment, "ns", "a")
        left = [calls]
        async def worker():
            while left[0] > 0:
                left[0] -= 1
                await c.get(NetworkAttachment, "ns", "a")
        t = time.process_time()
        await asyncio.gather(*(worker() for _ in range(32)))
        out["call_us"] = (time.process_time() - t) / calls * 1e6
        t = time.process_time()
        n = 0
        async for ev in c.watch(NetworkAttachment, "ns", resource_version="1"):
            n += 1
        assert n == events, n
        out["watch_event_us"] = (time.process_time() - t) / events * 1e6
    async with Client(url, share_events=True) as c:
        async def one():
            k = 0
            async for ev in c.watch(NetworkAttachment, "ns", resource_version="1"):
                k += 1
            return k
        t = time.process_time()
        got = await asyncio.gather(*(one() for _ in range(10)))
        assert got == [events] * 10, got
        out["shared_watch_event_us"] = (time.process_time() - t) / (10 * events) * 1e6
    print(json.dumps(out))
uvloop.run(main())
"""


def once(src: str, calls: int, events: int) -> dict[str, float]:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(events), src], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        env = dict(os.environ, PYTHONPATH=src)
        out = subprocess.run([sys.executable, "-c", CLIENT, src, port, str(calls), str(events)], env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        result: dict[str, float] = json.loads(out.stdout)
        return result
    finally:
        server.kill()
        server.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--src", action="append", help="a source tree to measure (default: this one's src)")
    args = ap.parse_args()
    srcs = [str(Path(s).resolve()) for s in args.src or [ROOT / "src"]]
    results: dict[str, list[dict[str, float]]] = {s: [] for s in srcs}
    for _ in range(args.runs):
        for s in srcs:
            results[s].append(once(s, args.calls, args.events))
    for s, runs in results.items():
        med = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
        print(json.dumps({"src": s, "runs": len(runs), "median_cpu_us": med,
                          "all": [{k: round(v, 2) for k, v in r.items()} for r in runs]}))  # fmt: skip


if __name__ == "__main__":
    main()
