"""`kos verify --kubeconfig FILE | --server URL [--nodes-endpoint URL]`: check the invariants; one line per violation, exit 1 on any."""

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
from kos.cli.settings import http_url, number_at_least
from kos.client.rest import ClientConfig
from kos.util.clock import REAL_CLOCK, Clock
from kos.verify import check

RECHECK_INTERVAL = 0.5
"""Seconds between checks while `--wait` lasts."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_client_flags(p)
    p.add_argument(
        "--nodes-endpoint", type=optional_url, default="", help="URL of `kos simnodes` (to check every node's fabric)"
    )
    serving.add_ca_argument(p, "--nodes-endpoint")
    p.add_argument(
        "--wait",
        type=number_at_least(0),
        default=0.0,
        help="keep checking for up to this many seconds until everything holds (a system settling)",
    )
    p.add_argument(
        "--watch",
        type=number_at_least(0),
        default=0.0,
        metavar="SECONDS",
        help="then follow every NetworkAttachment change for this many seconds, checking at every revision that no"
        " address is shown by two NAs",
    )
    p.add_argument(
        "--no-require-ready",
        action="store_true",
        help="accept addressed NAs that no agent has implemented (no agents running)",
    )
    add_logging_flags(p)  # fmt: skip


def optional_url(value: str) -> str:
    """An http(s) URL, or empty for none."""
    return http_url(value) if value else value


@dataclasses.dataclass(frozen=True, slots=True)
class VerifySettings:
    """Everything `kos verify` runs with, checked."""

    server: ClientConfig
    nodes_endpoint: str
    wait: float
    watch: float
    no_require_ready: bool
    nodes_ca_file: Path | None = None


def settings_from(args: argparse.Namespace) -> VerifySettings:
    server = client_config(args)
    assert server is not None
    return VerifySettings(server=server, nodes_endpoint=args.nodes_endpoint, wait=args.wait, watch=args.watch,
                          no_require_ready=args.no_require_ready, nodes_ca_file=args.nodes_ca_file)  # fmt: skip


def run(args: VerifySettings, *, clock: Clock = REAL_CLOCK) -> int:
    """Check, re-checking on `clock` while `--wait` lasts, then follow the attachments for `--watch` of it."""

    async def main(stop: asyncio.Event) -> int:
        nodes_ssl = serving.nodes_client_context(args.nodes_ca_file, serving.kubeconfig_ca(args.server))
        deadline = clock.monotonic() + args.wait
        report = check.Report([], [], "")
        while True:
            try:
                report = await check.violations(args.server, args.nodes_endpoint or None,
                                                require_ready=not args.no_require_ready, nodes_ssl=nodes_ssl)  # fmt: skip
                problems = report.violations
            except (StatusError, aiohttp.ClientError, OSError) as e:
                problems = [f"cannot read the system: {e}"]
            if not problems or clock.monotonic() >= deadline or stop.is_set():
                break
            await clock.sleep(RECHECK_INTERVAL)
        if args.watch > 0 and report.revision:
            try:
                problems += await check.watch_addresses(args.server, report.revision, args.watch, clock=clock)
            except (StatusError, aiohttp.ClientError, OSError) as e:
                problems.append(f"cannot follow the attachments: {e}")
        for p in problems:
            print(p)
        if report.ownerless:
            shown = ", ".join(report.ownerless[:10]) + (" ..." if len(report.ownerless) > 10 else "")
            print(f"{len(report.ownerless)} IPLock(s) without an owner hold their addresses: {shown}", file=sys.stderr)
        if not problems:
            print("all invariants hold", file=sys.stderr)
        return 1 if problems else 0

    return run_until_signalled(main, component="verify")
