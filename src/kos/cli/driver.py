"""`kos driver --kubeconfig FILE | --server URL ...`: the attachment throughput and latency driver (after the original's flags)."""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kos.api.errors import StatusError
from kos.cli.clientflags import add_client_flags, client_config
from kos.cli.common import UsageError, add_logging_flags, run_until_signalled
from kos.cli.settings import SettingError, at_least, fraction, positive
from kos.driver import report
from kos.driver.run import Driver
from kos.driver.settings import DriverError, DriverSettings, parse_nodes

_DURATION_PART = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,15})?)(ms|s|m|h)?")
"""One term of a duration (ASCII digits, bounded); `1m30s` is two. Matched with `fullmatch`/`finditer` only."""


def duration(value: str) -> float:
    """Seconds from `15s`, `1m`, `500ms`, `2h`, `1m30s` or a plain number of seconds."""
    total, rest = 0.0, value.strip()
    if not rest:
        raise argparse.ArgumentTypeError("empty duration")
    parts = list(_DURATION_PART.finditer(rest))
    if "".join(m.group(0) for m in parts) != rest or (len(parts) > 1 and any(m.group(2) is None for m in parts)):
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration such as 15s, 1m or 500ms")
    for m in parts:
        n, unit = float(m.group(1)), m.group(2) or "s"
        total += n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_client_flags(p)
    p.add_argument("--nodes", default="", help="candidate nodes: a,b,c or PREFIX:COUNT such as node-:100")
    p.add_argument("--num-nets", type=at_least(1), default=10, help="number of virtual networks")
    p.add_argument("--top-net-size", type=at_least(1), default=100, help="nominal size (slots) of the largest network")
    p.add_argument("--exponent", type=float, default=1.0, help="power-law exponent of network sizes")
    p.add_argument("--bias", type=int, default=0, help="power-law bias of network sizes")
    p.add_argument("--base-address", default="172.24.0.0", help="start of the address space carved into subnets")
    p.add_argument("--single-network", action="store_true", help="one subnet per network instead of two")
    p.add_argument("--subnet-size-factor", type=positive, default=1.0, help="subnet sizing multiplier")
    p.add_argument("--estimate", action="store_true", help="only compute and write the size distribution")
    p.add_argument("--round-robin", action="store_true", help="place NAs on nodes round-robin, not at random")
    p.add_argument("--only-node", default="", help="place every NA on this node")
    p.add_argument("--num-attachments", type=at_least(1), default=450, help="NAs to create over the run")
    p.add_argument("--threads", type=at_least(1), default=1, help="concurrent workers")
    p.add_argument("--rate", type=positive, default=10.0, help="target operations (creates + deletes) per second")
    p.add_argument("--ops-distribution", choices=["steady", "poisson"], default="steady", help="operation schedule")
    p.add_argument(
        "--wait-after-create",
        type=duration,
        default=0.0,
        help="shock test: only create, then wait this long and stop (e.g. 30s)",
    )
    p.add_argument(
        "--wait-after-delete",
        type=duration,
        default=15.0,
        help="how long to wait for straggling notifications at the end",
    )
    p.add_argument(
        "--test-fraction",
        type=fraction,
        default=0.0,
        help="probability that an NA gets a full ping test (needs the OVS fabric and the test scripts)",
    )
    p.add_argument("--ping-count", type=at_least(1), default=10, help="ping attempts in a full test")
    p.add_argument("--pending-wait", type=duration, default=60.0, help="longest wait for a peer to be tested")
    p.add_argument(
        "--stop-on-ping-fail", default=True, action=argparse.BooleanOptionalAction, help="stop when a test fails"
    )
    p.add_argument(
        "--stop-on-break", default=True, action=argparse.BooleanOptionalAction, help="stop when an NA breaks"
    )
    p.add_argument("--test-script-dir", default="/usr/local/kos/bin", help="where TestByPing and RemoveNetNS are")
    p.add_argument("--runid", default="", help="run ID (default MMDD-HHMM-NNNN)")
    p.add_argument("--seed", type=int, default=None, help="seed: the same seed makes the same VNIs, names, placements")
    p.add_argument("--output", type=Path, default=None, help="run directory (default ./<run-id>)")
    p.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto", help="progress display")
    add_logging_flags(p)  # fmt: skip


def settings_from(args: argparse.Namespace) -> DriverSettings:
    client = client_config(args, required=not args.estimate)
    server = client.server if client is not None else ""
    try:
        nodes = tuple(parse_nodes(args.nodes))
    except DriverError as e:
        raise SettingError("--nodes", str(e).removeprefix("--nodes ")) from None
    return DriverSettings(
        server=server, client=client, nodes=nodes, num_nets=args.num_nets, top_net_size=args.top_net_size,
        exponent=args.exponent, bias=args.bias, base_address=args.base_address, single_network=args.single_network,
        subnet_size_factor=args.subnet_size_factor, estimate=args.estimate, round_robin=args.round_robin,
        only_node=args.only_node, num_attachments=args.num_attachments, threads=args.threads, rate=args.rate,
        ops_distribution=args.ops_distribution, wait_after_create=args.wait_after_create,
        wait_after_delete=args.wait_after_delete, test_fraction=args.test_fraction, ping_count=args.ping_count,
        pending_wait=args.pending_wait, stop_on_ping_fail=args.stop_on_ping_fail, stop_on_break=args.stop_on_break,
        test_script_dir=args.test_script_dir, run_id=args.runid, seed=args.seed, output=args.output,
        progress=args.progress,
    )  # fmt: skip


def print_summary(summary: dict[str, Any], report_path: Path | None, console: Console) -> None:
    s = summary
    t = Table(title=f"kos driver run {s['run_id']}", show_header=True)
    t.add_column("stage")
    for q in ("p50", "p90", "p99", "max"):
        t.add_column(q, justify="right")
    names = {"create": "create call", "create_to_addressed": "create → addressed", "create_to_ready": "create → ready",
             "addressed_to_implemented": "addressed → implemented"}  # fmt: skip
    names.update((k, label) for k, label in report.TESTED_ROWS if s["latency_seconds"].get(k, {}).get("count"))
    for key, label in names.items():
        st = s["latency_seconds"][key]
        t.add_row(label, *(report._fmt(st.get(q)) for q in ("p50", "p90", "p99", "max")))
    console.print(t)
    console.print(
        f"created {s['created']}, deleted {s['deleted']}, ready {s['ready']}, never ready {s['never_ready']}, "
        f"failed creates {s['failed_creates']}; achieved {s['achieved_rate']:.1f} ops/s "
        f"({s['achieved_create_rate']:.1f} creates/s; target {s['target_rate']} ops/s); "
        f"{s['late_ops_percent']:.1f}% of operations late"
    )
    tests = s.get("tests")
    if tests and (tests["full"] or tests["half"] or tests["untested_ready"]):
        console.print(
            f"ping tests: {tests['full']} full ({tests['full_passed']} passed), {tests['half']} half "
            f"({tests['half_passed']} passed), {tests['untested_ready']} ready but never tested"
            + (f"; failed: {', '.join(tests['failed_names'])}" if tests["failed_names"] else "")
        )
    if s.get("stopped"):
        console.print(f"[bold red]stopped early:[/] {s['stopped']}")
    if report_path is not None:
        console.print(f"report: {report_path}")


async def drive(settings: DriverSettings, console: Console) -> tuple[dict[str, Any], Path | None]:
    driver = Driver(settings)
    mode = settings.progress
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "lines"
    total = 2 * settings.num_attachments
    if settings.estimate:
        summary = await driver.run()
        console.print(f"{summary['num_slots']} slots, avgPeers {summary['avg_peers']:.2f}, breakPoint "
                      f"{summary['break_point']}; wrote {driver.output}/size-distribution*.csv")  # fmt: skip
        return summary, None
    if mode == "bar":
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("ready {task.fields[ready]}"), TimeElapsedColumn(), console=console) as bar:  # fmt: skip
            task = bar.add_task(f"run {driver.run_id}", total=total, ready=0)

            def update(d: Driver) -> None:
                ready = sum(1 for r in d.records if not math.isnan(r.ready))
                bar.update(task, completed=d.ops_done, ready=ready)

            summary = await driver.run(update)
    else:
        last = [0.0]

        def lines(d: Driver) -> None:
            now = d.clock.monotonic()
            if mode == "lines" and now - last[0] >= 5:
                last[0] = now
                ready = sum(1 for r in d.records if not math.isnan(r.ready))
                console.print(f"run {d.run_id}: {d.ops_done}/{total} operations, {d.creates} created, "
                              f"{d.deletes} deleted, {ready} ready")  # fmt: skip

        summary = await driver.run(lines)
    path = report.write_report(driver.output, summary, driver.records, driver.wall_t0)
    return summary, path


def run(settings: DriverSettings) -> int:
    console = Console()

    async def main(stop: asyncio.Event) -> int:
        try:
            task = asyncio.create_task(drive(settings, console))
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                task.cancel()
                console.print("interrupted")
                return 1
            waiter.cancel()
            summary, path = task.result()
        except DriverError as e:
            raise UsageError(str(e)) from None
        except StatusError as e:
            raise UsageError(f"the apiserver refused: {e}") from None
        if summary.get("estimate"):
            return 0  # drive() has said what it computed; there was no run to summarise
        print_summary(summary, path, console)
        return 0 if not summary.get("never_ready") and not summary.get("stopped") else 1

    return run_until_signalled(main, component="driver")
