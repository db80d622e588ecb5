"""`kos chaos --state-dir DIR [--seed N] [--duration S] [--faults LIST] [--history FILE] [--rate R]`.

Drives a workload against a running `kos up --ha` while killing and stopping its processes one fault at a
time, records everything clients saw, then checks the record against etcd's own history (kos.chaos.run;
docs/reliability.md). Exit status 0: no violation; 1: a violation (lost acknowledged write, a watch stream
that differs from the store, a duplicate address, `kos verify` failing, an NA not ready, a fault not
recovered from); 2: a usage error (a bad flag, no cluster, a duration too short for the faults asked).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

from kos.chaos import faults
from kos.chaos.cluster import ClusterError
from kos.chaos.run import ChaosSettings, PlanError, plan
from kos.cli.common import add_logging_flags, run_until_signalled
from kos.cli.settings import SettingError, UsageError, at_least, positive

DESCRIPTION = """\
Test a running `kos up --ha` cluster (found through <state-dir>/cluster.json) by breaking it, and judge
what its users saw.

WHAT IT DOES TO YOUR CLUSTER: it creates Subnets and NetworkAttachments (namespaces chaos-0 and chaos-1,
names starting c<seed>r<run>-; left in place afterwards as evidence) and, one after another, it
SIGKILLs the etcd leader, an etcd follower, one apiserver, the active controller manager and the simulated
nodes; SIGSTOPs one apiserver for 20 s (a hung peer) and two of the three etcd members for 10 s (quorum
lost), then SIGCONTs them. `kos up` restarts what was killed. Never point it at a cluster you care about.

Every call (start, end, outcome) and every event of three watch streams go to --history (JSON lines). At
the end it reads etcd's own history and checks: no acknowledged write lost, every watch stream equal to the
store's history for its selection, no two NAs of a VNI with one address at any revision, `kos verify`,
every NA ready. It prints per fault the stall (longest time without a successful write), the client errors
and the time to recover. Exit 0: no violation; 1: a violation; 2: a usage error.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--state-dir", type=Path, default=Path(".kos"),
                   help="the state directory of the running `kos up --ha` (.kos)")  # fmt: skip
    p.add_argument("--seed", type=at_least(0), default=None,
                   help="makes the run repeatable: fault order, targets, names, choices (default: random, printed)")  # fmt: skip
    p.add_argument("--duration", type=positive, default=300.0,
                   help="seconds for the workload and the faults (spaced to fit; the checks after take up to "
                        "~2 min more); refused if too short for the faults asked")  # fmt: skip
    p.add_argument("--faults", default="all",
                   help=f"comma-separated faults to inject, each once (default all: {', '.join(faults.FAULTS)})")  # fmt: skip
    p.add_argument("--history", type=Path, default=None,
                   help="the history file, replaced (default <state-dir>/chaos/history-<seed>-<time>.jsonl)")  # fmt: skip
    p.add_argument("--rate", type=positive, default=10.0, help="NetworkAttachment writes per second (10)")
    add_logging_flags(p)
    p.set_defaults(log_level="warning")


def settings_from(args: argparse.Namespace) -> ChaosSettings:
    try:
        chosen = faults.parse_faults(args.faults)
    except ValueError as e:
        raise SettingError("--faults", str(e)) from None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    history = args.history or args.state_dir / "chaos" / f"history-{seed}-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
    s = ChaosSettings(state_dir=args.state_dir, seed=seed, duration=args.duration, faults=tuple(chosen),
                      history=history, rate=args.rate)  # fmt: skip
    try:
        plan(s, random.Random(seed))
    except PlanError as e:
        raise SettingError("--duration", str(e)) from None
    return s


def run(s: ChaosSettings) -> int:
    from kos.chaos import run as chaos_run

    async def main(stop: asyncio.Event) -> int:
        task = asyncio.create_task(chaos_run.run(s))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()  # every fault heals what it did in its `finally`
            print("kos chaos: interrupted", file=sys.stderr)
            await asyncio.gather(task, return_exceptions=True)
            return 1
        stopped.cancel()
        try:
            return task.result()
        except ClusterError as e:
            raise UsageError(str(e)) from None

    return run_until_signalled(main, component="chaos")
