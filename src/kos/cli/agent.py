"""`kos agent --server URL --node NAME --host-ip IP --fabric sim|logger|ovs`: one node's connection agent.

Workers: each worker has at most one fabric call in flight, and the ovs fabric
coalesces concurrent calls into one OVSDB transaction and one `ovs-ofctl`
process (~4 ms each, whatever they carry). With the original's 2 workers a
bundle carries at most two interfaces: 2,500 remote interfaces (a large VN
becoming relevant) took 5.0 s; with 32 workers 0.37 s, with 128 0.14 s
(docs/ovs.md). So with `--fabric ovs` the default is 32 — enough to meet the
0.5 s target while keeping a node's concurrent status writes to the apiserver
moderate. The in-memory fabrics cost nothing per call and keep 2.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import ipaddress
import logging
import os
import socket
import sys

from prometheus_client import CollectorRegistry

from kos.agent import execs
from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.api import names
from kos.cli.common import UsageError, add_logging_flags, host_port, run_until_signalled
from kos.client.rest import Client
from kos.fabric import registry
from kos.fabric.interface import FabricError
from kos.fabric.ovs import DATAPATHS, DEFAULT_OVSDB, DEFAULT_RUNDIR
from kos.http.probes import serve_probes

log = logging.getLogger(__name__)

WORKERS = {"ovs": 32}
"""Default worker count per fabric (2 for the others, as in the original)."""
EXIT_FABRIC = 4
"""The fabric could not be set up (the original's exit status for a failed fabric constructor)."""


class _PrintTestScriptDir(argparse.Action):
    """Print where the packaged TestByPing/RemoveNetNS live and exit (before required flags are checked)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        print(execs.test_script_dir())
        parser.exit(0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, help="URL of the kos apiserver")
    p.add_argument("--node", default=socket.gethostname().lower(),
                   help="this node's name, as NAs name it in spec.node (default: the host name in lower case)")  # fmt: skip
    p.add_argument("--host-ip", required=True, help="this node's IP address on the underlay")
    p.add_argument("--fabric", default="sim", choices=registry.NAMES, help="the switch to program")
    p.add_argument(
        "--allowed-programs",
        default="",
        help="comma-separated absolute paths allowed as argv[0] of post-create/post-delete commands",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker tasks (default 32 with --fabric ovs, whose calls batch; else 2)",
    )
    p.add_argument("--metrics-listen", type=host_port, default=("127.0.0.1", 9294), help="HOST:PORT for /metrics")
    p.add_argument(
        "--watch-mux",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="carry the agent's watches over one multiplexed connection (kos apiservers support it)",
    )
    p.add_argument("--sim-state", default="", help="with --fabric sim: a file that keeps the switch across restarts")
    p.add_argument("--lock-file", default="", help="exclusive lock taken at start (default /tmp/kos-agent-<node>.lock)")
    p.add_argument(
        "--ovsdb", default=DEFAULT_OVSDB, help="with --fabric ovs: the OVSDB remote, unix:PATH or tcp:HOST:PORT"
    )
    p.add_argument(
        "--ovs-rundir",
        default=DEFAULT_RUNDIR,
        help="with --fabric ovs: the directory of the bridge's OpenFlow socket kos.mgmt (OVS_RUNDIR)",
    )
    p.add_argument(
        "--ovs-datapath",
        default="system",
        choices=DATAPATHS,
        help="with --fabric ovs: the bridge's datapath, system (kernel module) or netdev (userspace)",
    )
    # not an EnvDefaultsParser flag on purpose: an action that prints and exits has nothing to take from the environment
    argparse.ArgumentParser.add_argument(
        p,
        "--print-test-script-dir",
        nargs=0,
        action=_PrintTestScriptDir,
        help="print the directory of the packaged TestByPing and RemoveNetNS scripts "
        "(for --allowed-programs and kos driver --test-script-dir) and exit",
    )
    add_logging_flags(p)  # fmt: skip


def take_lock(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UsageError(f"another kos agent (pid {holder}) holds {path}: only one agent may run per node") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def run(args: argparse.Namespace) -> int:
    problems = names.dns1123_subdomain_problems(args.node)
    if problems:  # spec.node must be one, so an agent of another name would never see an attachment
        print(f"kos agent: --node {args.node!r} is not a valid node name: {problems[-1]}", flush=True)
        return 2
    try:
        ipaddress.IPv4Address(args.host_ip)
    except ValueError:
        print(f"kos agent: --host-ip {args.host_ip!r} is not an IPv4 address", flush=True)
        return 2
    programs = frozenset(p.strip() for p in args.allowed_programs.split(",") if p.strip())
    bad = [p for p in programs if not os.path.isabs(p)]
    if bad:
        print(f"kos agent: --allowed-programs must be absolute paths, not {', '.join(bad)}", flush=True)
        return 2
    workers = args.workers if args.workers is not None else WORKERS.get(args.fabric, 2)
    if workers < 1:
        print(f"kos agent: --workers must be at least 1, not {workers}", flush=True)
        return 2
    if args.ovs_datapath not in DATAPATHS:  # a KOS_OVS_DATAPATH value is not checked by argparse
        print(f"kos agent: --ovs-datapath {args.ovs_datapath!r}: choose one of {', '.join(DATAPATHS)}", flush=True)
        return 2
    if args.fabric == "ovs" and not args.ovsdb.startswith(("unix:", "tcp:")):
        print(f"kos agent: --ovsdb {args.ovsdb!r}: use unix:PATH or tcp:HOST:PORT", flush=True)
        return 2

    async def main(stop: asyncio.Event) -> int:
        lock_fd = take_lock(args.lock_file or f"/tmp/kos-agent-{args.node}.lock")
        try:
            fabric = await registry.make(args.fabric, node=args.node, host_ip=args.host_ip,
                                         state_path=args.sim_state or None, ovsdb=args.ovsdb,
                                         ovs_rundir=args.ovs_rundir, ovs_datapath=args.ovs_datapath)  # fmt: skip
        except (registry.UnknownFabric, OSError) as e:
            raise UsageError(str(e)) from None
        except FabricError as e:
            print(f"kos agent: cannot set up the {args.fabric} fabric: {e}", file=sys.stderr, flush=True)
            os.close(lock_fd)
            return EXIT_FABRIC
        reg = CollectorRegistry()
        client = Client(args.server, user_agent=f"kos-agent/{args.node}", watch_mux=args.watch_mux)
        agent = ConnectionAgent(client, fabric, AgentSettings(args.node, args.host_ip, programs, workers),
                                AgentMetricFamilies(reg))  # fmt: skip
        host, port = args.metrics_listen
        try:
            probes = await serve_probes(host, port, reg, healthz=lambda: "ok" if agent.started.is_set() else "starting")
        except OSError as e:
            raise UsageError(f"cannot serve metrics on {host}:{port}: {e}") from None
        await agent.start()
        print(f"kos agent for node {args.node} running with the {args.fabric} fabric, {workers} workers", flush=True)
        await stop.wait()
        await agent.stop()
        await fabric.close()
        await client.close()
        await probes.stop(1.0)
        os.close(lock_fd)
        return 0

    return run_until_signalled(main, args=args, component="agent")
