"""What every subcommand shares: flags that also read `KOS_<FLAG>`, logging flags, the event loop."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from kos.util import gctune, log


class UsageError(Exception):
    """A bad flag or setting: reported as one clear line and exit status 2."""


class EnvDefaultsParser(argparse.ArgumentParser):
    """An ArgumentParser whose flags default to the environment variable KOS_<FLAG_NAME>."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        long = [o for o in action.option_strings if o.startswith("--")]
        if long and not isinstance(action, argparse._HelpAction):
            env = "KOS_" + long[0][2:].upper().replace("-", "_")
            if env in os.environ:
                raw = os.environ[env]
                if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction
                              | argparse.BooleanOptionalAction):  # fmt: skip
                    if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                        raise UsageError(f"environment variable {env}={raw!r}: use true or false")
                    action.default = raw.lower() in ("1", "true", "yes", "on")
                elif action.type is not None and callable(action.type):
                    try:
                        action.default = action.type(raw)
                    except (TypeError, ValueError) as e:
                        raise UsageError(f"environment variable {env}={raw!r}: {e}") from None
                else:
                    action.default = raw
                action.required = False
            if action.help and action.help is not argparse.SUPPRESS:
                action.help += f" [env {env}]"
        return action

    def error(self, message: str) -> Any:  # one clear line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_logging_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level")
    p.add_argument("--log-format", default="text", choices=["text", "json"], help="log line format")


def host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or len(port) > 5 or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host or "0.0.0.0", int(port)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[int]], *, args: Any, component: str) -> int:
    """Run `main(stop)` on uvloop; SIGINT/SIGTERM set `stop`; a second signal exits at once with 1."""
    log.setup(args.log_level, args.log_format, component)
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
