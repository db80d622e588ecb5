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
  (one decode, ten deliveries);
- mux shared watch: the same over the WebSocket watch multiplexer (`watch_mux=True`), the
  simulated nodes' case (the canned server sends 64-line records, one per message).

Reported per figure: the median over --runs of µs of client CPU per call / per event.
With several `--src` trees (e.g. a worktree of the commit before a change, and this
one), the runs are interleaved (A B A B ...) so both see the same machine state.

On a loaded machine whole processes differ by ±20%; `--same-process N` with two trees
loads both into one process and alternates N short segments (3,000 calls each; every
fifth, a watch and 10 multiplexed shared watches), which resolves a few percent: it
reports both medians and the median of the pairwise after/before ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import asyncio, json, sys, uvloop
from aiohttp import web
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

async def mux(request):
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)

    async def serve(wid):  # the watches take turns per record, as a change reaches every watch at once
        for c in chunks:
            await ws.send_bytes(b"%d %d\n%b" % (wid, len(c), c))
            await asyncio.sleep(0)
        await ws.send_bytes(b"%d 0\n" % wid)

    tasks = set()
    async for msg in ws:
        frame = json.loads(msg.data)
        if frame["op"] == "watch":
            t = asyncio.ensure_future(serve(frame["id"]))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    return ws

async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    app = web.Application()
    app.router.add_get("/apis/network.example.com/v1alpha1/watchmux", mux)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(s.sockets[0].getsockname()[1], runner.addresses[0][1], flush=True)
    await asyncio.get_running_loop().connect_read_pipe(asyncio.Protocol, sys.stdin)
    await asyncio.sleep(3600)
uvloop.run(main())
"""


def load(src: str) -> tuple[Any, Any]:
    """(Client, NetworkAttachment) of the kos tree at `src`; several trees can be loaded in one process."""
    for m in [m for m in sys.modules if m == "kos" or m.startswith("kos.")]:
        del sys.modules[m]
    sys.path.insert(0, src)
    try:
        rest = importlib.import_module("kos.client.rest")
        types = importlib.import_module("kos.api.types")
    finally:
        sys.path.remove(src)
    assert rest.__file__.startswith(src), (rest.__file__, src)
    return rest.Client, types.NetworkAttachment


async def calls(client: Any, na: Any, n: int) -> float:
    """µs of CPU per `get`, 32 at a time."""
    left = [n]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await client.get(na, "ns", "a")

    t = time.process_time()
    await asyncio.gather(*(worker() for _ in range(32)))
    return (time.process_time() - t) / n * 1e6


async def watches(client: Any, na: Any, events: int, n: int = 1) -> float:
    """µs of CPU per delivered event, `n` watches of `client` at once."""

    async def one() -> int:
        return sum([1 async for _ in client.watch(na, "ns", resource_version="1")])

    t = time.process_time()
    got = await asyncio.gather(*(one() for _ in range(n)))
    assert got == [events] * n, got
    return (time.process_time() - t) / (n * events) * 1e6


async def child(src: str, ports: list[str], n_calls: int, events: int) -> dict[str, float]:
    """Every figure for one tree, in this process."""
    client_cls, na = load(src)
    url, mux_url = (f"http://127.0.0.1:{p}" for p in ports)
    out: dict[str, float] = {}
    async with client_cls(url) as c:
        await c.get(na, "ns", "a")
        out["call_us"] = await calls(c, na, n_calls)
        out["watch_event_us"] = await watches(c, na, events)
    async with client_cls(url, share_events=True) as c:
        out["shared_watch_event_us"] = await watches(c, na, events, 10)
    async with client_cls(mux_url, watch_mux=True, share_events=True) as c:
        await watches(c, na, events)  # the WebSocket connects
        out["mux_shared_watch_event_us"] = await watches(c, na, events, 10)
    return out


async def same_process(srcs: list[str], ports: list[str], segments: int, events: int) -> dict[str, float]:
    """Two trees in this process, alternating short segments: 3,000 calls each; every fifth segment also
    one HTTP watch and 10 multiplexed watches of a `share_events` client (the simulated nodes' shape)."""
    (cb, nb), (cn, nn) = load(srcs[0]), load(srcs[1])
    url, mux_url = (f"http://127.0.0.1:{p}" for p in ports)
    async with (cb(url) as before, cn(url) as after, cb(mux_url, watch_mux=True, share_events=True) as mb,
                cn(mux_url, watch_mux=True, share_events=True) as ma):  # fmt: skip
        await calls(before, nb, 2000)
        await calls(after, nn, 2000)
        await watches(mb, nb, events)
        await watches(ma, nn, events)
        r: dict[str, list[float]] = {k: [] for k in ("cb", "ca", "wb", "wa", "mb", "ma")}
        for i in range(segments):
            order = [(before, mb, nb, "b"), (after, ma, nn, "a")]
            for c, m, na, x in order if i % 2 else order[::-1]:
                r["c" + x].append(await calls(c, na, 3000))
                if i % 5 == 0:
                    r["w" + x].append(await watches(c, na, events))
                    r["m" + x].append(await watches(m, na, events, 10))
    med = statistics.median

    def ratio(b: str, a: str) -> float:
        return med(y / x for x, y in zip(r[b], r[a], strict=True))

    return {"call_us_before": med(r["cb"]), "call_us_after": med(r["ca"]), "call_ratio": ratio("cb", "ca"),
            "watch_event_us_before": med(r["wb"]), "watch_event_us_after": med(r["wa"]), "watch_ratio": ratio("wb", "wa"),
            "mux_shared_event_us_before": med(r["mb"]), "mux_shared_event_us_after": med(r["ma"]),
            "mux_shared_ratio": ratio("mb", "ma"), "segments": segments}  # fmt: skip


def serve(src: str, events: int) -> tuple[subprocess.Popen[str], list[str]]:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(events), src], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert server.stdout is not None
    return server, server.stdout.readline().split()


def once(src: str, calls: int, events: int) -> dict[str, float]:
    server, ports = serve(src, events)
    try:
        out = subprocess.run([sys.executable, __file__, "--child", src, *ports, str(calls), str(events)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        result: dict[str, float] = json.loads(out.stdout)
        return result
    finally:
        server.kill()
        server.wait()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        src, port, mux_port, n_calls, events = sys.argv[2:7]
        print(json.dumps(uvloop.run(child(src, [port, mux_port], int(n_calls), int(events)))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--src", action="append", help="a source tree to measure (default: this one's src)")
    ap.add_argument("--same-process", type=int, default=0, metavar="SEGMENTS",
                    help="with two --src: load both in one process and alternate SEGMENTS short segments")  # fmt: skip
    args = ap.parse_args()
    # in a child process: this one loads kos from the trees under test (--src), not from the venv
    subprocess.run(
        [sys.executable, "-c", "from kos.util import calibration; calibration.print_calibration()"], check=False
    )
    srcs = [str(Path(s).resolve()) for s in args.src or [ROOT / "src"]]
    if args.same_process:
        assert len(srcs) == 2, "--same-process compares two trees"
        server, ports = serve(srcs[1], 20_000)
        try:
            print(json.dumps({"srcs": srcs, **uvloop.run(same_process(srcs, ports, args.same_process, 20_000))}))
        finally:
            server.kill()
        return
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
