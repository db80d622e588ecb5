"""What every subcommand shares: the logging flags and the event loop (settings: kos.cli.settings)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from kos.cli.settings import UsageError
from kos.util import gctune

__all__ = ["UsageError", "add_logging_flags", "run_until_signalled"]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def add_logging_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="log level")
    p.add_argument("--log-format", default="text", choices=LOG_FORMATS, help="log line format: key=value or JSON")


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[int]], *, component: str) -> int:
    """Run `main(stop)` on uvloop; SIGINT/SIGTERM set `stop`; a second signal exits at once with 1.

    A `UsageError` out of `main` (a refused setup: a port in use, a store that cannot open) is one line on
    standard error and exit status 2.
    """
    gctune.tune()
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run

    async def wrapper() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        count = 0

        def on_signal() -> None:
            nonlocal count
            count += 1
            if count > 1:
                os._exit(1)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return await main(stop)

    try:
        result: int = runner(wrapper())
        return result
    except UsageError as e:
        print(f"kos {component}: {e}", file=sys.stderr)
        return 2
