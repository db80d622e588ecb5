"""`kos simnodes --server URL --count N`: N simulated nodes (agents with the sim fabric) in one process."""

from __future__ import annotations

import argparse
import asyncio
import os

from kos.agent.simnodes import SimNodes
from kos.cli.common import UsageError, add_logging_flags, host_port, run_until_signalled


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, help="URL of the kos apiserver")
    p.add_argument("--count", type=int, required=True, help="number of simulated nodes")
    p.add_argument("--name-prefix", default="node-", help="node names are <prefix>0 ... <prefix><count-1>")
    p.add_argument("--fabric", default="sim", choices=["sim"], help="the simulated nodes' fabric")
    p.add_argument("--latency", type=float, default=0.0, help="seconds each fabric operation takes (imitates a switch)")
    p.add_argument("--workers", type=int, default=2, help="worker tasks per node")
    p.add_argument("--allowed-programs", default="", help="comma-separated absolute paths allowed in commands")
    p.add_argument(
        "--per-node-metrics",
        action="store_true",
        help="label agent metrics with each node's name (default: one aggregate series)",
    )
    p.add_argument(
        "--listen",
        type=host_port,
        default=("127.0.0.1", 9380),
        help="HOST:PORT for the nodes endpoint (/nodes, /nodes/NAME/fabric, /trace, /metrics)",
    )
    add_logging_flags(p)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        print("kos simnodes: --count must be at least 1", flush=True)
        return 2

    async def main(stop: asyncio.Event) -> int:
        programs = frozenset(p.strip() for p in args.allowed_programs.split(",") if p.strip())
        nodes = SimNodes(args.server, args.count, prefix=args.name_prefix, latency=args.latency,
                         workers=args.workers, allowed_programs=programs,
                         per_node_metrics=args.per_node_metrics)  # fmt: skip
        host, port = args.listen
        try:
            port = await nodes.serve(host, port)
        except OSError as e:
            raise UsageError(f"cannot serve on {host}:{port}: {e}") from None
        print(f"kos simnodes: nodes endpoint http://{host}:{port} (pid {os.getpid()})", flush=True)
        starting = asyncio.create_task(nodes.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and not stop.is_set():
            print(f"kos simnodes: {args.count} nodes running", flush=True)
            await stop.wait()
        starting.cancel()
        await nodes.stop()
        return 0

    return run_until_signalled(main, args=args, component="simnodes")
