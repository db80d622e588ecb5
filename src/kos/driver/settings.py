"""The driver's settings, and the checks that need no apiserver (after the original driver's flags).

`DriverSettings` is what `kos driver` (and `kos demo`) hand the driver; `check` refuses what
cannot run, each with one line naming the flag, before anything is written or connected to.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from pathlib import Path

from kos.api import names
from kos.client.config import ClientConfig
from kos.driver import distribution

RUN_ID = re.compile(r"[-a-zA-Z0-9!@#$%^&()+=][-a-zA-Z0-9!@#$%^&()+=.]{0,99}")
"""The original driver's run-id rule, bounded; used with `fullmatch` (`$` would accept a final newline)."""
MAX_NODES = 1_000_000


class DriverError(Exception):
    """A problem with the driver's settings or set-up: one clear line."""


def parse_nodes(spec: str) -> list[str]:
    """`a,b,c` or `PREFIX:COUNT` (e.g. `node-:100` → node-0 … node-99); DriverError names a bad one."""
    spec = spec.strip()
    if not spec:
        return []
    if ":" in spec and "," not in spec:
        prefix, _, count = spec.rpartition(":")
        if not (count.isascii() and count.isdigit() and len(count) <= 7 and 1 <= int(count) <= MAX_NODES):
            raise DriverError(f"--nodes {spec!r}: the count after ':' must be an integer from 1 to {MAX_NODES}")
        nodes = [f"{prefix}{i}" for i in range(int(count))]
        checked = [nodes[0], nodes[-1]]  # the rest differ only in their digits
    else:
        nodes = checked = [n.strip() for n in spec.split(",") if n.strip()]
    for n in checked:
        problems = names.dns1123_subdomain_problems(n)
        if problems:
            raise DriverError(f"--nodes {spec!r}: {n!r} is not a valid node name: {problems[0]}")
    return nodes


def generated_run_id(rng: random.Random) -> str:
    """The original's default run ID: local MMDD-HHMM and four random digits."""
    return time.strftime("%m%d-%H%M-") + f"{rng.randrange(10000):04d}"


def namespace_of(run_id: str) -> str:
    """The run's namespace: its ID lower-cased, anything but [a-z0-9-] made a dash, at most 63 characters."""
    return re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-")[:63] or "kos-driver"


@dataclasses.dataclass(frozen=True)
class DriverSettings:
    server: str
    nodes: tuple[str, ...] = ()
    num_nets: int = 10
    top_net_size: int = 100
    exponent: float = 1.0
    bias: int = 0
    base_address: str = "172.24.0.0"
    single_network: bool = False
    subnet_size_factor: float = 1.0
    estimate: bool = False
    round_robin: bool = False
    only_node: str = ""
    num_attachments: int = 450
    threads: int = 1
    rate: float = 10.0
    """Target operations (creates + deletes) per second."""
    ops_distribution: str = "steady"
    wait_after_create: float = 0.0
    """Seconds; non-zero makes a shock test (only creates, then this wait)."""
    wait_after_delete: float = 15.0
    """Seconds to wait for straggling notifications at the end."""
    test_fraction: float = 0.0
    ping_count: int = 10
    pending_wait: float = 60.0
    """Seconds an NA's ping test waits at most for a peer of its VN to finish its own test."""
    stop_on_ping_fail: bool = True
    stop_on_break: bool = True
    test_script_dir: str = "/usr/local/kos/bin"
    dump_ops_times: bool = True
    keep_population: bool = False
    """Skip the cool-down: leave the last population in place (for checking a full system afterwards)."""
    run_id: str = ""
    seed: int | None = None
    output: Path | None = None
    progress: str = "auto"
    """"bar" (a progress bar), "lines" (a line every few seconds), "none", or "auto" (bar on a terminal)."""
    client: ClientConfig | None = None
    """Where and as whom to connect (`--kubeconfig`); None: `server`, no credentials."""


def check(s: DriverSettings) -> None:
    """Refuse settings that cannot make a run (DriverError naming the flag)."""
    if s.num_attachments < 1 or s.threads < 1:
        raise DriverError("--num-attachments and --threads must be at least 1")
    if s.run_id and not RUN_ID.fullmatch(s.run_id):
        raise DriverError(f"--runid {s.run_id!r} must match {RUN_ID.pattern}")
    if not 0 <= s.test_fraction <= 1:
        raise DriverError("--test-fraction must be between 0 and 1")


def check_against_plan(s: DriverSettings, plan: distribution.Plan) -> None:
    """Refuse a run (not an estimate) that names no nodes, or a shock test with more NAs than slots."""
    if s.estimate:
        return
    if not s.nodes and not s.only_node:
        raise DriverError("name the candidate nodes with --nodes (a,b,c or PREFIX:COUNT) or --only-node")
    if s.only_node and s.nodes and s.only_node not in s.nodes:
        raise DriverError(f"--only-node {s.only_node!r} is not one of --nodes")
    if s.wait_after_create and s.num_attachments > plan.num_slots:
        raise DriverError(f"--wait-after-create needs --num-attachments <= the {plan.num_slots} slots of the plan")
