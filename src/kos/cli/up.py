"""`kos up [--nodes N] [--storage URL] [--state-dir DIR] [--listen HOST:PORT]`: kos on this machine until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from kos.cli.cluster import Cluster, ClusterSettings, default_state_dir
from kos.cli.common import UsageError, add_logging_flags, host_port, run_until_signalled


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=50, help="simulated nodes")
    p.add_argument("--storage", default="", help="storage URL (default: sqlite in the state directory)")
    p.add_argument("--state-dir", type=Path, default=None, help="where state, logs and the kubeconfig go (.kos)")
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 8080), help="HOST:PORT for the apiserver")
    add_logging_flags(p)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print("kos up: --nodes must be at least 1")
        return 2

    async def main(stop: asyncio.Event) -> int:
        host, port = args.listen
        try:
            cluster = Cluster(ClusterSettings(state_dir=args.state_dir or default_state_dir(), nodes=args.nodes,
                                              storage=args.storage, host=host, port=port))  # fmt: skip
        except RuntimeError as e:
            raise UsageError(str(e)) from None
        try:
            await cluster.start()
        except RuntimeError as e:
            await cluster.stop()
            raise UsageError(str(e)) from None
        print(f"kos is up: apiserver {cluster.server} ({cluster.storage}), {args.nodes} simulated nodes "
              f"(fabric endpoint {cluster.nodes_url})\n"
              f"  kubectl --kubeconfig {cluster.kubeconfig} get sn,na,ipl -A\n"
              f"  kos driver --server {cluster.server} --nodes node-:{args.nodes}\n"
              f"  kos verify --server {cluster.server} --nodes-endpoint {cluster.nodes_url}\n"
              f"logs in {cluster.s.state_dir / 'logs'}; Ctrl-C stops everything", flush=True)  # fmt: skip
        await stop.wait()
        print("kos: stopping", flush=True)
        await cluster.stop()
        return 0

    return run_until_signalled(main, args=args, component="up")
