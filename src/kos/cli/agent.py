"""`kos agent --kubeconfig FILE | --server URL --node NAME --host-ip IP --fabric sim|logger|ovs`: one node's
connection agent.

It runs as its node: a kubeconfig whose client certificate names another node (`system:node:<other>`) is
refused at start (exit status 2), as the apiserver's node restriction would refuse its every write.

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
import dataclasses
import fcntl
import os
import socket
import sys

from prometheus_client import CollectorRegistry

from kos.agent import execs
from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.api import names
from kos.cli import serving
from kos.cli.clientflags import add_client_flags, client_config, node_identity
from kos.cli.common import UsageError, add_logging_flags, run_until_signalled
from kos.cli.settings import SettingError, absolute_paths, at_least, host_port, ipv4
from kos.client.rest import Client, ClientConfig
from kos.fabric import registry
from kos.fabric.interface import FabricError
from kos.fabric.ovs import DATAPATHS, DEFAULT_OVSDB, DEFAULT_RUNDIR
from kos.http.probes import serve_probes

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
    add_client_flags(p)
    p.add_argument("--node", type=node_name, default=socket.gethostname().lower(),
                   help="this node's name, as NAs name it in spec.node (default: the host name in lower case)")  # fmt: skip
    p.add_argument("--host-ip", type=ipv4, required=True, help="this node's IP address on the underlay")
    p.add_argument("--fabric", default="sim", choices=registry.NAMES, help="the switch to program")
    p.add_argument(
        "--allowed-programs",
        type=absolute_paths,
        default=frozenset(),
        help="comma-separated absolute paths allowed as argv[0] of post-create/post-delete commands",
    )
    p.add_argument(
        "--workers",
        type=at_least(1),
        default=None,
        help="worker tasks (default 32 with --fabric ovs, whose calls batch; else 2)",
    )
    p.add_argument("--metrics-listen", type=host_port, default=("127.0.0.1", 9294), help="HOST:PORT for /metrics")
    serving.add_arguments(p, "--metrics-listen")
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
    # nargs=0: an action that prints and exits has nothing to take from the environment (kos.cli.settings)
    p.add_argument(
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


def node_name(value: str) -> str:
    """A node name: spec.node must be one, so an agent of another name would never see an attachment."""
    problems = names.dns1123_subdomain_problems(value)
    if problems:
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid node name: {problems[-1]}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class AgentCommand:
    """Everything `kos agent` runs with, checked."""

    server: str
    agent: AgentSettings
    fabric: str
    metrics_listen: tuple[str, int]
    watch_mux: bool
    sim_state: str
    lock_file: str
    ovsdb: str
    ovs_rundir: str
    ovs_datapath: str
    tls: serving.ServingTLS = serving.PLAIN
    """How the metrics listener serves (kos.cli.serving)."""
    client: ClientConfig | None = None
    """Where and as whom to connect (`--kubeconfig`, `--server`)."""


def settings_from(args: argparse.Namespace) -> AgentCommand:
    if args.fabric == "ovs" and not args.ovsdb.startswith(("unix:", "tcp:")):
        raise SettingError("--ovsdb", f"{args.ovsdb!r}: use unix:PATH or tcp:HOST:PORT")
    workers = args.workers if args.workers is not None else WORKERS.get(args.fabric, 2)
    client = client_config(args)
    assert client is not None
    identity = node_identity(client)
    if identity is not None and identity != args.node:
        raise SettingError(
            "--kubeconfig",
            f"its client certificate is node {identity!r} (system:node:{identity}), not --node {args.node!r}",
        )
    return AgentCommand(
        server=client.server, client=client, agent=AgentSettings(args.node, args.host_ip, args.allowed_programs, workers),
        fabric=args.fabric, metrics_listen=args.metrics_listen, watch_mux=args.watch_mux, sim_state=args.sim_state,
        lock_file=args.lock_file or f"/tmp/kos-agent-{args.node}.lock", ovsdb=args.ovsdb,
        ovs_rundir=args.ovs_rundir, ovs_datapath=args.ovs_datapath, tls=serving.settings_from(args),
    )  # fmt: skip


def run(s: AgentCommand) -> int:
    node, workers = s.agent.node, s.agent.workers

    async def main(stop: asyncio.Event) -> int:
        lock_fd = take_lock(s.lock_file)
        try:
            fabric = await registry.make(s.fabric, node=node, host_ip=s.agent.host_ip,
                                         state_path=s.sim_state or None, ovsdb=s.ovsdb,
                                         ovs_rundir=s.ovs_rundir, ovs_datapath=s.ovs_datapath)  # fmt: skip
        except (registry.UnknownFabric, OSError) as e:
            raise UsageError(str(e)) from None
        except FabricError as e:
            print(f"kos agent: cannot set up the {s.fabric} fabric: {e}", file=sys.stderr, flush=True)
            os.close(lock_fd)
            return EXIT_FABRIC
        reg = CollectorRegistry()
        client = Client(s.client or s.server, user_agent=f"kos-agent/{node}", watch_mux=s.watch_mux)
        agent = ConnectionAgent(client, fabric, s.agent, AgentMetricFamilies(reg))
        host, port = s.metrics_listen
        try:
            ctx = serving.server_context(s.tls, host, component="kos-agent")
        except (OSError, ValueError) as e:
            raise SettingError(serving.CERT_FLAG, f"cannot serve TLS with it: {e}") from None
        try:
            probes = await serve_probes(host, port, reg, ssl=ctx,
                                        healthz=lambda: "ok" if agent.started.is_set() else "starting")  # fmt: skip
        except OSError as e:
            raise SettingError("--metrics-listen", f"cannot serve metrics on {host}:{port}: {e}") from None
        await agent.start()
        print(f"kos agent for node {node} running with the {s.fabric} fabric, {workers} workers", flush=True)
        await stop.wait()
        await agent.stop()
        await fabric.close()
        await client.close()
        await probes.stop(1.0)
        os.close(lock_fd)
        return 0

    return run_until_signalled(main, component="agent")
