"""`kos agent --server URL --node NAME --host-ip IP --fabric sim|logger|ovs`: one node's connection agent."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import ipaddress
import logging
import os
import socket

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.cli.common import UsageError, add_logging_flags, host_port, run_until_signalled
from kos.client.rest import Client
from kos.fabric import registry

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, help="URL of the kos apiserver")
    p.add_argument("--node", default=socket.gethostname(), help="this node's name (default: the host name)")
    p.add_argument("--host-ip", required=True, help="this node's IP address on the underlay")
    p.add_argument("--fabric", default="sim", choices=registry.NAMES, help="the switch to program")
    p.add_argument(
        "--allowed-programs",
        default="",
        help="comma-separated absolute paths allowed as argv[0] of post-create/post-delete commands",
    )
    p.add_argument("--workers", type=int, default=2, help="worker tasks")
    p.add_argument("--metrics-listen", type=host_port, default=("127.0.0.1", 9294), help="HOST:PORT for /metrics")
    p.add_argument(
        "--watch-mux",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="carry the agent's watches over one multiplexed connection (kos apiservers support it)",
    )
    p.add_argument("--sim-state", default="", help="with --fabric sim: a file that keeps the switch across restarts")
    p.add_argument("--lock-file", default="", help="exclusive lock taken at start (default /tmp/kos-agent-<node>.lock)")
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

    async def main(stop: asyncio.Event) -> int:
        lock_fd = take_lock(args.lock_file or f"/tmp/kos-agent-{args.node}.lock")
        try:
            fabric = await registry.make(args.fabric, node=args.node, host_ip=args.host_ip,
                                         state_path=args.sim_state or None)  # fmt: skip
        except (registry.UnknownFabric, OSError) as e:
            raise UsageError(str(e)) from None
        reg = CollectorRegistry()
        client = Client(args.server, user_agent=f"kos-agent/{args.node}", watch_mux=args.watch_mux)
        agent = ConnectionAgent(client, fabric, AgentSettings(args.node, args.host_ip, programs, args.workers),
                                AgentMetricFamilies(reg))  # fmt: skip
        app = web.Application()

        async def metrics(_: web.Request) -> web.StreamResponse:
            return web.Response(body=generate_latest(reg), headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(_: web.Request) -> web.StreamResponse:
            return web.Response(text="ok" if agent.started.is_set() else "starting", status=200)

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        host, port = args.metrics_listen
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as e:
            raise UsageError(f"cannot serve metrics on {host}:{port}: {e}") from None
        await agent.start()
        print(f"kos agent for node {args.node} running with the {args.fabric} fabric", flush=True)
        await stop.wait()
        await agent.stop()
        await fabric.close()
        await client.close()
        await runner.cleanup()
        os.close(lock_fd)
        return 0

    return run_until_signalled(main, args=args, component="agent")
