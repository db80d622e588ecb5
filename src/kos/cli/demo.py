"""`kos demo`: a one-machine kos, one driver run, the invariants checked, a summary and a report. The main job.

Exits 0 only if every attachment became ready and `kos verify` found nothing wrong. With `--monitoring`, kos up's
Prometheus (kos.cli.monitoring) runs too and the report gets plots of its queries over the run
(kos.cli.monitoringplots). With `--fabric ovs` (root) the nodes are real agents on a real Open vSwitch datapath in
simulated hosts, and the driver runs ping tests (kos.cli.demoovs); it also exits non-zero if a ping test failed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from kos.api.types import IPLock, NetworkAttachment
from kos.cli import demoovs, monitoringplots
from kos.cli.cluster import Cluster, ClusterSettings
from kos.cli.common import UsageError, add_logging_flags, run_until_signalled
from kos.cli.driver import drive, print_summary
from kos.cli.settings import SettingError, at_least, fraction, positive
from kos.cli.up import add_insecure_flag, add_monitoring_flag
from kos.client.rest import Client, ClientConfig
from kos.driver.run import DriverError, DriverSettings
from kos.util.clock import REAL_CLOCK, Clock
from kos.verify import check

VERIFY_INTERVAL = 0.5
"""Seconds between checks of the invariants while the system settles."""


OVS_DEFAULTS = {"num_attachments": 300, "rate": 10.0, "num_nets": 10, "top_net_size": 40, "test_fraction": 0.3}
"""`--fabric ovs`'s workload unless given: three userspace switches and their agents share the machine's cores."""
SIM_DEFAULTS = {"num_attachments": 1000, "rate": 100.0, "num_nets": 30, "top_net_size": 60, "test_fraction": 0.0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fabric", choices=["sim", "ovs"], default="sim",
                   help="sim: simulated nodes; ovs: real agents on Open vSwitch in simulated hosts (root)")  # fmt: skip
    p.add_argument("--nodes", type=at_least(1), default=50, help="simulated nodes (--fabric sim)")
    p.add_argument("--hosts", type=at_least(1), default=3, help="simulated hosts, each with its own OVS (--fabric ovs)")
    p.add_argument("--num-attachments", type=at_least(1), default=None,
                   help="NAs the driver creates over the run (default 1000; 300 with --fabric ovs)")  # fmt: skip
    p.add_argument("--rate", type=positive, default=None,
                   help="driver operations (creates + deletes) per second (default 100; 10 with --fabric ovs)")  # fmt: skip
    p.add_argument("--num-nets", type=at_least(1), default=None, help="virtual networks (default 30; 10 with ovs)")
    p.add_argument("--top-net-size", type=at_least(1), default=None,
                   help="size of the largest virtual network (default 60; 40 with --fabric ovs)")  # fmt: skip
    p.add_argument("--test-fraction", type=fraction, default=None,
                   help="share of NAs whose guest pings an earlier NA of its network (--fabric ovs; default 0.3)")  # fmt: skip
    p.add_argument("--threads", type=at_least(1), default=4, help="driver workers")
    p.add_argument("--seed", type=int, default=1, help="workload seed")
    p.add_argument("--output", type=Path, default=None, help="run directory (default ./kos-demo-<time>)")
    p.add_argument("--state-dir", type=Path, default=None, help="cluster state (default: a temporary directory)")
    p.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto", help="progress display")
    add_monitoring_flag(p)
    add_insecure_flag(p)
    add_logging_flags(p)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class DemoSettings:
    """Everything `kos demo` runs with, checked."""

    nodes: int
    num_attachments: int
    rate: float
    num_nets: int
    top_net_size: int
    threads: int
    seed: int
    output: Path | None
    state_dir: Path | None
    progress: str
    insecure: bool = False
    """Plain HTTP and no authentication (`--insecure`); by default HTTPS with kos up's PKI."""
    monitoring: bool = False
    """`--monitoring`: Prometheus too, and plots of its queries over the run in the report."""
    fabric: str = "sim"
    """"sim": simulated nodes; "ovs": real agents on Open vSwitch in `hosts` simulated hosts (kos.cli.demoovs)."""
    hosts: int = 3
    test_fraction: float = 0.0
    """The share of NAs with a full ping test (`--fabric ovs` only)."""


def settings_from(args: argparse.Namespace) -> DemoSettings:
    defaults = OVS_DEFAULTS if args.fabric == "ovs" else SIM_DEFAULTS

    def given(name: str) -> Any:
        value = getattr(args, name)
        return defaults[name] if value is None else value

    if args.fabric != "ovs" and args.test_fraction:
        raise SettingError("--test-fraction", "ping tests need real interfaces: use it with --fabric ovs")
    if args.fabric == "ovs" and args.hosts > demoovs.MAX_HOSTS:
        raise SettingError("--hosts", f"{args.hosts} is more than the {demoovs.MAX_HOSTS} hosts a lab's /24s hold")
    if args.fabric == "ovs" and args.state_dir is not None:
        raise SettingError("--state-dir", f"--fabric ovs keeps its state in {demoovs.WORKDIR} (cleared at exit)")
    return DemoSettings(
        nodes=args.nodes, num_attachments=given("num_attachments"), rate=given("rate"), num_nets=given("num_nets"),
        top_net_size=given("top_net_size"), threads=args.threads, seed=args.seed, output=args.output,
        state_dir=args.state_dir, progress=args.progress, insecure=args.insecure, monitoring=args.monitoring,
        fabric=args.fabric, hosts=args.hosts, test_fraction=given("test_fraction"),
    )  # fmt: skip


def run(args: DemoSettings, *, clock: Clock = REAL_CLOCK) -> int:
    """The demo on `clock` (its polls, settling and the cluster's timers)."""
    console = Console()
    if args.fabric == "ovs":
        return run_ovs(args, console, clock=clock)

    async def main(stop: asyncio.Event) -> int:
        with tempfile.TemporaryDirectory(prefix="kos-demo-") as tmp:
            state = args.state_dir or Path(tmp)
            output = args.output or Path(f"kos-demo-{time.strftime('%Y%m%d-%H%M%S')}")
            console.print(f"starting kos: apiserver (SQLite), controller manager, {args.nodes} simulated nodes …")
            cluster = Cluster(ClusterSettings(state_dir=state, nodes=args.nodes, insecure=args.insecure,
                                              monitoring=args.monitoring), clock=clock)  # fmt: skip
            try:
                t0 = clock.monotonic()
                await cluster.start()
                console.print(f"up in {clock.monotonic() - t0:.1f}s at {cluster.server}; driving "
                              f"{args.num_attachments} attachments at {args.rate:g} operations/s …")  # fmt: skip
                if args.monitoring and cluster.prometheus is None:
                    console.print("no Prometheus (the prometheus binary is not on PATH; Debian: apt-get install "
                                  "prometheus): the report will have no plots from it")  # fmt: skip
                await _prometheus_baseline(cluster, console)
                run_start = time.time()
                task = asyncio.create_task(drive(driver_settings(args, cluster, output), console))
                waiter = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if task not in done:
                    task.cancel()
                    console.print("interrupted")
                    return 1
                waiter.cancel()
                summary, path = task.result()
                await _prometheus_plots(cluster, path, run_start, time.time(), console)
                problems = await _check_and_clean(cluster, summary, console)
            except (DriverError, RuntimeError) as e:
                raise UsageError(str(e)) from None
            finally:
                await cluster.stop()
            return _report(summary, path, problems, console)

    return run_until_signalled(main, component="demo")


def run_ovs(args: DemoSettings, console: Console, *, clock: Clock = REAL_CLOCK) -> int:
    """The demo on a real datapath (kos.cli.demoovs), checked and reported as the simulated one; also exit 1 if a
    ping test failed."""
    output = args.output or Path(f"kos-demo-ovs-{time.strftime('%Y%m%d-%H%M%S')}")
    ovs = demoovs.OVSDemo(
        hosts=args.hosts, num_attachments=args.num_attachments, rate=args.rate, num_nets=args.num_nets,
        top_net_size=args.top_net_size, threads=args.threads, seed=args.seed, test_fraction=args.test_fraction,
        output=output, progress=args.progress, insecure=args.insecure, monitoring=args.monitoring,
    )  # fmt: skip

    async def after(
        cluster: Cluster, summary: dict[str, Any], path: Path | None, states: check.FabricStates
    ) -> list[str]:
        end = time.time()
        await _prometheus_plots(cluster, path, end - summary["elapsed_seconds"], end, console)
        return await _check_and_clean(cluster, summary, console, states)

    async def main(stop: asyncio.Event) -> int:
        outcome = await demoovs.run(ovs, stop, console, clock, after)
        if outcome is None:
            return 1
        summary, path, problems = outcome
        status = _report(summary, path, problems, console)
        tests = summary.get("tests") or {}
        if tests.get("failed_names") or any(tests.get(f"{k}_passed", 0) < tests.get(k, 0) for k in ("full", "half")):
            status = 1
        return status

    return run_until_signalled(main, component="demo")


async def _check_and_clean(
    cluster: Cluster, summary: dict[str, Any], console: Console, states: check.FabricStates | None = None
) -> list[str]:
    """kos verify with the run's last population in place, then after deleting it (nothing may be left); the
    nodes' fabrics read from the simulated nodes, or by `states` (real switches)."""
    left = summary["created"] - summary["deleted"]
    console.print(f"checking the invariants with {left} attachments in place (kos verify) …")
    problems = await _verify(cluster, settle=20.0, states=states)
    console.print("deleting them and checking that nothing is left behind …")
    await _delete_run(cluster.client_config(), summary["namespace"])
    problems += await _verify(cluster, settle=20.0, expect_empty=summary["namespace"], states=states)
    return problems


def driver_settings(s: DemoSettings, cluster: Cluster, output: Path) -> DriverSettings:
    """The demo's driver run: `s`'s workload on every simulated node of `cluster` (as its admin), leaving its
    last population in place."""
    return DriverSettings(
        server=cluster.server, client=cluster.client_config(), nodes=tuple(f"node-{i}" for i in range(s.nodes)), num_nets=s.num_nets,
        top_net_size=s.top_net_size, num_attachments=s.num_attachments, rate=s.rate, threads=s.threads,
        wait_after_delete=10.0, seed=s.seed, output=output, progress=s.progress,
        run_id=f"demo-{time.strftime('%H%M%S')}", keep_population=True,
    )  # fmt: skip


def _prometheus_context(cluster: Cluster) -> ssl.SSLContext | None:
    """How Prometheus' https is verified: the cluster CA (None when plain)."""
    return ssl.create_default_context(cadata=cluster.identities.ca_pem.decode()) if cluster.identities else None


async def _prometheus_baseline(cluster: Cluster, console: Console) -> None:
    """With a Prometheus: wait for its first scrapes, so its plots start from the idle cluster."""
    if cluster.prometheus is None:
        return
    console.print("waiting for Prometheus' first scrapes …")
    if not await monitoringplots.baseline(cluster.prometheus, _prometheus_context(cluster), cluster.clock):
        console.print("[yellow]Prometheus has not scraped every process yet[/]")


async def _prometheus_plots(cluster: Cluster, report: Path | None, start: float, end: float, console: Console) -> None:
    """With a Prometheus: its plots over the run (epoch seconds `start`..`end`) into the report."""
    if cluster.prometheus is None or report is None:
        return
    console.print(f"drawing plots from Prometheus ({cluster.prometheus}) …")
    context = _prometheus_context(cluster)
    for problem in await monitoringplots.add_to_report(cluster.prometheus, context, report, start, end, cluster.clock):
        console.print(f"[yellow]plots from Prometheus: {problem}[/]")


def _report(summary: dict[str, Any], path: Path | None, problems: list[str], console: Console) -> int:
    """Print the summary and what verification found; the exit status (0: all ready and nothing found)."""
    print_summary(summary, path, console)
    if problems:
        console.print(f"[bold red]kos verify found {len(problems)} problem(s):[/]")
        for p in problems[:20]:
            console.print(f"  {p}")
    else:
        console.print("[bold green]kos verify: all invariants hold[/] (addresses, subnets, readiness, "
                      f"every node's fabric); report: {path}")  # fmt: skip
    ok = summary["never_ready"] == 0 and not summary.get("stopped") and not problems
    return 0 if ok else 1


async def _verify(
    cluster: Cluster, settle: float, expect_empty: str = "", states: check.FabricStates | None = None
) -> list[str]:
    clock = cluster.clock
    deadline = clock.monotonic() + settle
    while True:
        config = cluster.client_config()
        nodes = cluster.nodes_url if cluster.s.nodes else None  # simulated nodes report their fabrics
        problems = (await check.violations(config, nodes, nodes_ssl=cluster.nodes_ssl,
                                           read_fabrics=states)).violations  # fmt: skip
        if expect_empty:
            async with Client(config) as c:
                locks, _ = await c.list(IPLock, expect_empty)
                nas, _ = await c.list(NetworkAttachment, expect_empty)
            problems += [f"left behind: IPLock {lk.metadata.name}" for lk in locks]
            problems += [f"left behind: NetworkAttachment {na.metadata.name}" for na in nas]
        if not problems or clock.monotonic() > deadline:
            return problems
        await clock.sleep(VERIFY_INTERVAL)


async def _delete_run(server: ClientConfig, namespace: str) -> None:
    async with Client(server) as c:
        nas, _ = await c.list(NetworkAttachment, namespace)
        await asyncio.gather(*(c.delete(NetworkAttachment, namespace, na.metadata.name) for na in nas))
