"""`kos apiserver --storage URL --listen HOST:PORT`: the API server."""

from __future__ import annotations

import argparse
import asyncio

from kos.apiserver.server import APIServer, Settings
from kos.cli.common import UsageError, add_logging_flags, run_until_signalled
from kos.cli.settings import at_least, host_port, positive
from kos.storage.interface import StoreError
from kos.storage.url import StoreURLError
from kos.util.log import get_logger

log = get_logger(__name__)


_BOUNDS: tuple[tuple[str, type, int, str], ...] = (
    # (Settings field, type, least value (ints; floats must be positive), help): one flag each,
    # `--max-header-line-bytes` and so on
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


STORAGE_SCHEMES = ("memory", "sqlite", "etcd")


def storage_url(value: str) -> str:
    """A storage URL of a known scheme; the rest is checked when the store opens (kos.storage.url)."""
    scheme, sep, _ = value.partition("://")
    if not sep or scheme not in STORAGE_SCHEMES:
        raise argparse.ArgumentTypeError(f"{value!r}: use memory://, sqlite:///path or etcd://host:port")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        type=storage_url,
        default="memory://",
        help="memory://, sqlite:///path/state.db (durable) or etcd://host:port[,host:port...][/prefix]",
    )
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 8080), help="HOST:PORT to serve on")
    p.add_argument(
        "--watch-cache-size",
        type=at_least(100),
        default=50_000,
        help="events of history kept per kind for resuming watches",
    )
    p.add_argument("--max-request-bytes", type=at_least(4096), default=1 << 20, help="largest request body accepted")
    p.add_argument(
        "--check-subnets-conflicts",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="reject creating a Subnet that conflicts with an existing one",
    )
    p.add_argument("--bookmark-interval", type=positive, default=10.0, help="seconds between watch bookmarks")
    # bounds on what one client can make the server hold (docs/operations.md); in `p` itself, not an argument
    # group, whose flags would not read KOS_<FLAG>
    d = Settings()
    for name, kind, least, text in _BOUNDS:
        check = positive if kind is float else at_least(least)
        p.add_argument("--" + name.replace("_", "-"), type=check, default=getattr(d, name), help=text)
    add_logging_flags(p)  # fmt: skip


def settings_from(args: argparse.Namespace) -> Settings:
    host, port = args.listen
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


def run(settings: Settings) -> int:
    async def main(stop: asyncio.Event) -> int:
        server = APIServer(settings)
        try:
            await server.start()
        except (StoreURLError, StoreError, OSError) as e:
            raise UsageError(str(e)) from None
        print(f"kos apiserver ready at {server.url}", flush=True)
        await stop.wait()
        log.info("shutting down")
        await server.stop()
        return 0

    return run_until_signalled(main, component="apiserver")
