"""`kos apiserver --storage URL --listen HOST:PORT`: the API server."""

from __future__ import annotations

import argparse
import asyncio
import logging

from kos.apiserver.server import APIServer, Settings
from kos.cli.common import UsageError, add_logging_flags, host_port, run_until_signalled
from kos.storage.interface import StoreError
from kos.storage.url import StoreURLError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        default="memory://",
        help="memory://, sqlite:///path/state.db (durable) or etcd://host:port[,host:port...][/prefix]",
    )
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 8080), help="HOST:PORT to serve on")
    p.add_argument(
        "--watch-cache-size",
        type=int,
        default=50_000,
        help="events of history kept per kind for resuming watches",
    )
    p.add_argument("--max-request-bytes", type=int, default=1 << 20, help="largest request body accepted")
    p.add_argument(
        "--check-subnets-conflicts",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="reject creating a Subnet that conflicts with an existing one",
    )
    p.add_argument("--bookmark-interval", type=float, default=10.0, help="seconds between watch bookmarks")
    d = Settings()
    # bounds on what one client can make the server hold (docs/operations.md); in `p` itself, not an argument
    # group, whose flags would not read KOS_<FLAG>
    p.add_argument(
        "--max-header-line-bytes",
        type=int,
        default=d.max_header_line_bytes,
        help="longest request line or header line (431 past it)",
    )
    p.add_argument("--max-headers", type=int, default=d.max_headers, help="most header fields in a request (431)")
    p.add_argument(
        "--header-timeout",
        type=float,
        default=d.header_timeout,
        help="seconds a request head may take from its first byte",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=d.idle_timeout,
        help="seconds a connection may idle, a body stall, or a client not read its answers",
    )
    p.add_argument(
        "--max-pipelined-requests",
        type=int,
        default=d.max_pipelined_requests,
        help="requests read ahead of their answers on one connection",
    )
    p.add_argument(
        "--max-watches-per-connection",
        type=int,
        default=d.max_watches_per_connection,
        help="watches on one multiplexed connection (429 past it)",
    )
    p.add_argument(
        "--max-watches-per-client",
        type=int,
        default=d.max_watches_per_client,
        help="watches from one client address, HTTP and multiplexed (429 past it)",
    )
    p.add_argument(
        "--max-watchmux-connections-per-client",
        type=int,
        default=d.max_watchmux_connections_per_client,
        help="watch multiplexer connections from one client address (429 past it)",
    )
    p.add_argument(
        "--watchmux-max-bytes",
        type=int,
        default=d.watchmux_max_bytes,
        help="output queued for one multiplexed connection before its slowest watches are ended",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=d.shutdown_timeout,
        help="seconds shutdown waits for calls in flight and for watch clients to take their end",
    )
    add_logging_flags(p)  # fmt: skip


def settings_from(args: argparse.Namespace) -> Settings:
    host, port = args.listen
    if args.watch_cache_size < 100:
        raise UsageError("--watch-cache-size must be at least 100")
    if args.max_request_bytes < 4096:
        raise UsageError("--max-request-bytes must be at least 4096")
    for flag, value, least in (
        ("--max-header-line-bytes", args.max_header_line_bytes, 256),
        ("--max-headers", args.max_headers, 8),
        ("--max-pipelined-requests", args.max_pipelined_requests, 1),
        ("--max-watches-per-connection", args.max_watches_per_connection, 1),
        ("--max-watches-per-client", args.max_watches_per_client, 1),
        ("--max-watchmux-connections-per-client", args.max_watchmux_connections_per_client, 1),
        ("--watchmux-max-bytes", args.watchmux_max_bytes, 1 << 20),
    ):
        if value < least:
            raise UsageError(f"{flag} must be at least {least}")
    for flag, seconds in (("--header-timeout", args.header_timeout), ("--idle-timeout", args.idle_timeout),
                          ("--shutdown-timeout", args.shutdown_timeout)):  # fmt: skip
        if not seconds > 0:
            raise UsageError(f"{flag} must be a positive number of seconds")
    return Settings(
        storage=args.storage,
        host=host,
        port=port,
        watch_cache_size=args.watch_cache_size,
        max_request_bytes=args.max_request_bytes,
        check_subnet_conflicts=args.check_subnets_conflicts,
        bookmark_interval=args.bookmark_interval,
        max_header_line_bytes=args.max_header_line_bytes,
        max_headers=args.max_headers,
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
        max_pipelined_requests=args.max_pipelined_requests,
        max_watches_per_connection=args.max_watches_per_connection,
        max_watches_per_client=args.max_watches_per_client,
        max_watchmux_connections_per_client=args.max_watchmux_connections_per_client,
        watchmux_max_bytes=args.watchmux_max_bytes,
        shutdown_timeout=args.shutdown_timeout,
    )


def run(args: argparse.Namespace) -> int:
    async def main(stop: asyncio.Event) -> int:
        server = APIServer(settings_from(args))
        try:
            await server.start()
        except (StoreURLError, StoreError, OSError) as e:
            raise UsageError(str(e)) from None
        print(f"kos apiserver ready at {server.url}", flush=True)
        await stop.wait()
        log.info("shutting down")
        await server.stop()
        return 0

    return run_until_signalled(main, args=args, component="apiserver")
