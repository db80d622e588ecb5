"""`kos trace --kubeconfig FILE | --server URL --nodes-endpoint URL FROM TO`: does one NA reach another through the simulated fabric?"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

import aiohttp

from kos.api.errors import StatusError
from kos.cli import serving
from kos.cli.clientflags import add_client_flags, client_config
from kos.cli.common import add_logging_flags, run_until_signalled
from kos.cli.settings import http_url
from kos.client.rest import ClientConfig
from kos.verify import check


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_client_flags(p)
    p.add_argument("--nodes-endpoint", type=http_url, required=True, help="URL of `kos simnodes`")
    serving.add_ca_argument(p, "--nodes-endpoint")
    p.add_argument("source", help="namespace/name of the sending NetworkAttachment")
    p.add_argument("destination", help="namespace/name of the receiving NetworkAttachment")
    add_logging_flags(p)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class TraceSettings:
    """Everything `kos trace` runs with, checked."""

    server: ClientConfig
    nodes_endpoint: str
    source: str
    destination: str
    nodes_ca_file: Path | None = None


def settings_from(args: argparse.Namespace) -> TraceSettings:
    server = client_config(args)
    assert server is not None
    return TraceSettings(server, args.nodes_endpoint, args.source, args.destination, args.nodes_ca_file)


def run(args: TraceSettings) -> int:
    async def main(stop: asyncio.Event) -> int:
        try:
            r = await check.trace(args.server, args.nodes_endpoint, args.source, args.destination,
                                  nodes_ssl=serving.nodes_client_context(args.nodes_ca_file, serving.kubeconfig_ca(args.server)))  # fmt: skip
        except (StatusError, aiohttp.ClientError, OSError) as e:
            print(f"kos trace: {e}", file=sys.stderr)
            return 2
        for hop in r.get("hops", []):
            print("  " + hop)
        if r.get("reachable"):
            print(f"{args.source} reaches {args.destination} at {r['node']}/{r['interface']} ({r['mac']})")
            return 0
        where = f" at {r['where']}" if r.get("where") else ""
        print(f"{args.source} does not reach {args.destination}: {r.get('stage')}{where}: {r.get('why')}")
        return 1

    return run_until_signalled(main, component="trace")
