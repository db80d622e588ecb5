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


_BOUNDS: tuple[tuple[str, type, float, str], ...] = (
    # (Settings field, type, least value, help): one flag each, `--max-header-line-bytes` and so on
    ("max_header_line_bytes", int, 256, "longest request line or header line (431 past it)"),
    ("max_headers", int, 8, "most header fields in a request (431)"),
    ("header_timeout", float, 0, "seconds a request head may take from its first byte"),
    ("idle_timeout", float, 0, "seconds a connection may idle or a client not read its answers"),
    ("max_pipelined_requests", int, 1, "requests read ahead of their answers on one connection"),
    ("max_watches_per_connection", int, 1, "watches on one multiplexed connection (429 past it)"),
    ("max_watches_per_client", int, 1, "watches from one client address, HTTP and multiplexed (429 past it)"),
    ("max_watchmux_connections_per_client", int, 1,
     "watch multiplexer connections from one client address (429 past it)"),
    ("watchmux_max_bytes", int, 1 << 20,
     "output queued for one multiplexed connection before its slowest watches are ended"),
    ("shutdown_timeout", float, 0, "seconds shutdown waits for calls in flight and for watch clients to take their end"),
)  # fmt: skip


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
    # bounds on what one client can make the server hold (docs/operations.md); in `p` itself, not an argument
    # group, whose flags would not read KOS_<FLAG>
    d = Settings()
    for name, kind, _least, text in _BOUNDS:
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(d, name), help=text)
    add_logging_flags(p)  # fmt: skip


def settings_from(args: argparse.Namespace) -> Settings:
    host, port = args.listen
    if args.watch_cache_size < 100:
        raise UsageError("--watch-cache-size must be at least 100")
    if args.max_request_bytes < 4096:
        raise UsageError("--max-request-bytes must be at least 4096")
    for name, kind, least, _ in _BOUNDS:
        value, flag = getattr(args, name), "--" + name.replace("_", "-")
        if kind is float and not value > 0:
            raise UsageError(f"{flag} must be a positive number of seconds")
        if value < least:
            raise UsageError(f"{flag} must be at least {least}")
    return Settings(
        storage=args.storage,
        host=host,
        port=port,
        watch_cache_size=args.watch_cache_size,
        max_request_bytes=args.max_request_bytes,
        check_subnet_conflicts=args.check_subnets_conflicts,
        bookmark_interval=args.bookmark_interval,
        **{name: getattr(args, name) for name, *_ in _BOUNDS},
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
