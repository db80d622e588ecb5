"""The floor under kos' TLS cost: CPU per write of a bare uvloop server, plain vs TLS, one write per connection
per loop turn (the pattern of an HTTP watch fan-out, where each delivery is a record of its own).

    .venv/bin/python bench/tls_records.py [--connections 200] [--rounds 100] [--bytes 400] [--runs 3]

No kos code on the write path: `asyncio.start_server` on uvloop with kos.http.tls's server context (the one
`kos apiserver` serves with) and plain `transport.write`; the clients are protocols that count bytes, in the
same process, so the CPU measured is both ends (encrypt and decrypt). Prints the calibration, each run and
the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from kos.http.tls import server_context
from kos.testing.tlsfiles import TestPKI
from kos.util import calibration


class _Sink(asyncio.Protocol):
    def __init__(self, counter: list[int]) -> None:
        self.counter = counter

    def data_received(self, data: bytes) -> None:
        self.counter[0] += len(data)


async def _run(pki: TestPKI | None, connections: int, rounds: int, size: int) -> float:
    """CPU µs per write (both ends)."""
    sctx = server_context(pki.files(client_cas=False)) if pki is not None else None
    cctx: ssl.SSLContext | None = pki.client_context() if pki is not None else None
    writers: list[asyncio.StreamWriter] = []

    async def accepted(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)

    server = await asyncio.start_server(accepted, "127.0.0.1", 0, ssl=sctx, backlog=connections)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    got = [0]
    clients = []
    for _ in range(connections):
        t, _p = await loop.create_connection(lambda: _Sink(got), "127.0.0.1", port, ssl=cctx,
                                             server_hostname="127.0.0.1" if cctx else None)  # fmt: skip
        clients.append(t)
    while len(writers) < connections:
        await asyncio.sleep(0.01)
    message = b"x" * size
    transports = [w.transport for w in writers]
    c0 = time.process_time()
    for _ in range(rounds):
        for tr in transports:
            tr.write(message)
        await asyncio.sleep(0)
    while got[0] < connections * rounds * size:
        await asyncio.sleep(0.001)
    cpu = time.process_time() - c0
    for t in clients:
        t.close()
    server.close()
    return cpu / (connections * rounds) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--bytes", type=int, default=400)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    calibration.print_calibration()
    with tempfile.TemporaryDirectory() as d:
        pki = TestPKI(Path(d))
        results: dict[str, list[float]] = {"plain": [], "tls": []}
        for _ in range(args.runs):
            for mode, p in (("plain", None), ("tls", pki)):
                results[mode].append(uvloop.run(_run(p, args.connections, args.rounds, args.bytes)))
    for mode, runs in results.items():
        print(f"{mode:5s} {statistics.median(runs):6.2f} µs CPU per write, both ends (runs: "
              + ", ".join(f"{r:.2f}" for r in runs) + ")")  # fmt: skip
    print(f"tls - plain: {statistics.median(results['tls']) - statistics.median(results['plain']):.2f} µs per write")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
