"""kos's HTTP layer (kos.http) against uvicorn + httptools, serving the same apiserver application.

Why: docs/dependencies.md says a well-kept library beats hand-written code unless
a measurement says otherwise. Both servers run the apiserver's `Routes` (the same
handlers, registries and watch cache) in a process of their own on uvloop; a
client process drives one keep-alive connection: `--calls` GETs of one object,
then `--calls` creates. Runs alternate A/B/A/B (`--rounds`) because other work
loads the CPU. Two figures per phase: requests/s as the client saw them, and the
server process's CPU time per request (user + system, from /proc), which other
load disturbs far less than wall time; their medians are printed with the CPU
calibration.

    .venv/bin/python bench/http_layer.py --rounds 5 --calls 3000
    (uvicorn is not a dependency of kos: `pip install uvicorn` to run it)

`--src DIR` runs the "kos" server from another tree's sources (e.g. the commit
before the layer, whose front end was `apiserver/fastpath.py`) for a before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
from typing import Any

from kos.util import calibration

NS = "/apis/network.example.com/v1alpha1/namespaces/bench/subnets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- servers ----------------------------------------------------------------------------------------


def serve(kind: str, port: int, src: str | None) -> None:
    if src:
        sys.path.insert(0, src)
    import uvloop

    uvloop.run(_serve(kind, port))


async def _serve(kind: str, port: int) -> None:
    from kos.apiserver.server import APIServer, Settings

    if kind == "kos":
        s = APIServer(Settings(port=port))
        await s.start()
        await asyncio.Event().wait()
    s = APIServer(Settings(port=0))
    await s.start()
    assert s.http is not None
    import uvicorn

    config = uvicorn.Config(_asgi(s.http.app), host="127.0.0.1", port=port, loop="none", http="httptools",
                            lifespan="off", access_log=False, log_level="warning")  # fmt: skip
    await uvicorn.Server(config).serve()


def _asgi(routes: Any) -> Any:
    """A raw ASGI app around the same application (calls only: the benchmark sends no watch)."""
    from kos.http.messages import Reply, Request

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = {k.lower(): v for k, v in scope["headers"]}
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        req = Request(scope["method"], scope["raw_path"].decode("latin-1"), scope["query_string"].decode("latin-1"),
                      headers, body, scope["client"][0] if scope.get("client") else "")  # fmt: skip
        reply = await routes.serve(req)
        assert isinstance(reply, Reply)
        out = [(b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode())]
        out += [(k.encode(), v.encode()) for k, v in (reply.headers or {}).items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": reply.body})

    return app


# --- client -----------------------------------------------------------------------------------------


def drive(port: int, calls: int, tag: str, pid: int, out: Any) -> None:
    import uvloop

    out.put(uvloop.run(_drive(port, calls, tag, pid)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(port: int, calls: int, tag: str, pid: int) -> tuple[float, float, float, float]:
    for _ in range(200):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.05)

    async def call(method: str, path: str, body: bytes = b"") -> int:
        head = f"{method} {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        i = raw.lower().index(b"content-length:")
        n = int(raw[i + 15 : raw.index(b"\r\n", i)])
        await reader.readexactly(n)
        return status

    def subnet(name: str, vni: int) -> bytes:
        return json.dumps({"apiVersion": "network.example.com/v1alpha1", "kind": "Subnet", "metadata": {"name": name},
                           "spec": {"vni": vni, "ipv4": f"10.{vni % 250}.{vni // 250 % 250}.0/24"}}).encode()  # fmt: skip

    assert await call("POST", NS, subnet(f"g{tag}", 1)) == 201
    t, c = time.perf_counter(), cpu_seconds(pid)
    for _ in range(calls):
        await call("GET", f"{NS}/g{tag}")
    gets, get_cpu = calls / (time.perf_counter() - t), (cpu_seconds(pid) - c) / calls * 1e6
    t, c = time.perf_counter(), cpu_seconds(pid)
    for i in range(calls):
        assert await call("POST", NS, subnet(f"c{tag}-{i}", 2 + i)) == 201
    creates, create_cpu = calls / (time.perf_counter() - t), (cpu_seconds(pid) - c) / calls * 1e6
    writer.close()
    return gets, creates, get_cpu, create_cpu


def one_run(kind: str, calls: int, src: str | None, tag: str) -> tuple[float, float, float, float]:
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    server = ctx.Process(target=serve, args=(kind, port, src if kind == "kos" else None), daemon=True)
    server.start()
    q = ctx.Queue()
    client = ctx.Process(target=drive, args=(port, calls, tag, server.pid, q))
    client.start()
    result: tuple[float, float, float, float] = q.get(timeout=600)
    client.join()
    server.terminate()
    server.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--src", help="run the kos server from this source tree (its src/ directory)")
    ap.add_argument("--against", default="uvicorn", choices=["uvicorn", "kos"],
                    help="the B side: uvicorn, or kos from the current tree (with --src for A)")  # fmt: skip
    args = ap.parse_args()
    calibration.print_calibration()
    a_src = os.path.abspath(args.src) if args.src else None
    results: dict[str, list[tuple[float, float, float, float]]] = {"A": [], "B": []}
    for r in range(args.rounds):
        for side in ("A", "B"):
            if side == "A":
                res = one_run("kos", args.calls, a_src, f"{r}a")
            else:
                res = one_run(args.against if args.against == "uvicorn" else "kos", args.calls, None, f"{r}b")
            results[side].append(res)
            print(f"round {r} {side}: GET {res[0]:.0f}/s ({res[2]:.0f} µs CPU), create {res[1]:.0f}/s"
                  f" ({res[3]:.0f} µs CPU)", flush=True)  # fmt: skip
    names = {"A": f"kos from {a_src}" if a_src else "kos.http",
             "B": "uvicorn+httptools" if args.against == "uvicorn" else "kos.http (this tree)"}  # fmt: skip
    for side, rs in results.items():
        med = [statistics.median(r[i] for r in rs) for i in range(4)]
        print(f"{names[side]}: median GET {med[0]:.0f}/s, {med[2]:.0f} µs server CPU each; "
              f"median create {med[1]:.0f}/s, {med[3]:.0f} µs server CPU each")  # fmt: skip


if __name__ == "__main__":
    main()
