"""One settings pipeline for every `kos` command: flags and `KOS_<FLAG>` → checked values → a frozen settings object.

Every flag can also be given as the environment variable `KOS_<FLAG>` (`--log-level` is `KOS_LOG_LEVEL`); the
command line wins. Both sources go through the same check — the flag's `type` (a converter that raises
`ValueError`/`argparse.ArgumentTypeError`, such as `at_least(1)` or `host_port`) and its `choices` — so a bad
value from either is the same one line naming both, and exit status 2:

    kos apiserver: --log-level / KOS_LOG_LEVEL: 'verbose' is not one of debug, info, warning, error

Environment values are read when the chosen command's flags are parsed, not when any parser is built: a
variable meant for one command (`KOS_WORKERS`) cannot break another. A required flag is satisfied by its
variable. Checks that involve several flags belong to each command's `settings_from(args)`, which raises
`SettingError` (or `UsageError`) and returns the command's frozen settings; `kos.cli.main` runs the pipeline
parse → `settings_from` → `run(settings)` and turns every `UsageError` into one line and exit status 2.

Why argparse and not click or pydantic-settings: docs/dependencies.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "KOS_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_BOOLEAN_ACTIONS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)

T = TypeVar("T")


class UsageError(Exception):
    """A bad flag or setting: reported as one clear line and exit status 2 (`kos.cli.main`)."""

    prog = ""
    """The command (`kos apiserver`) the error belongs to; set by the parser that met it."""


class SettingError(UsageError):
    """A bad value for one flag: `--flag / KOS_FLAG: problem`."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"{flag} / {env_name(flag)}: {problem}")
        self.flag = flag


def env_name(flag: str) -> str:
    """`--log-level` → `KOS_LOG_LEVEL`."""
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


class _FromEnv:
    """The default of a flag whose variable is set: the raw text, converted once parsing is over."""

    __slots__ = ("raw",)

    def __init__(self, raw: str) -> None:
        self.raw = raw


class _Checked:
    """A flag's converter and choices in one callable, whose failures name the flag and its variable."""

    __slots__ = ("choices", "convert", "flag")

    def __init__(self, flag: str, convert: Callable[[str], Any] | None, choices: Iterable[Any] | None) -> None:
        self.flag, self.convert = flag, convert
        self.choices = tuple(choices) if choices is not None else None

    def __call__(self, raw: str) -> Any:
        value: Any = raw
        if self.convert is not None:
            try:
                value = self.convert(raw)
            except argparse.ArgumentTypeError as e:
                raise SettingError(self.flag, str(e)) from None
            except (TypeError, ValueError) as e:
                kind = "an integer" if self.convert is int else "a number" if self.convert is float else ""
                raise SettingError(self.flag, f"{raw!r} is not {kind}" if kind else f"{raw!r}: {e}") from None
        if self.choices is not None and value not in self.choices:
            raise SettingError(self.flag, f"{raw!r} is not one of {', '.join(map(str, self.choices))}")
        return value


class SettingsParser(argparse.ArgumentParser):
    """An ArgumentParser whose long flags also read `KOS_<FLAG>`, with every value checked as described above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flags: list[tuple[argparse.Action, str, Any, bool]] = []  # action, its long flag, default, required

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        long = [o for o in args if isinstance(o, str) and o.startswith("--")]
        if not long or kwargs.get("action") in ("help", "version") or kwargs.get("nargs") == 0:
            return super().add_argument(*args, **kwargs)  # help, version, actions that print and exit: no variable
        if kwargs.get("type") is not None or kwargs.get("choices") is not None:
            kwargs["type"] = _Checked(long[0], kwargs.get("type"), kwargs.get("choices"))
        required = bool(kwargs.pop("required", False))
        action = super().add_argument(*args, **kwargs)
        self._flags.append((action, long[0], action.default, required))
        if action.help and action.help is not argparse.SUPPRESS:
            action.help += f" [env {env_name(long[0])}]" + (" (required)" if required else "")
        return action

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        for action, flag, default, _ in self._flags:
            raw = os.environ.get(env_name(flag))
            action.default = default if raw is None else _FromEnv(raw)
        try:
            ns, rest = super().parse_known_args(args, namespace)
            for action, flag, _, required in self._flags:
                value = getattr(ns, action.dest, None)
                if isinstance(value, _FromEnv):
                    setattr(ns, action.dest, self._from_env(action, flag, value.raw))
                elif required and value is None:
                    raise SettingError(flag, "required: give the flag or set the variable")
        except UsageError as e:
            e.prog = e.prog or self.prog  # the innermost parser (the subcommand's) names the command
            raise
        return ns, rest

    @staticmethod
    def _from_env(action: argparse.Action, flag: str, raw: str) -> Any:
        if isinstance(action, _BOOLEAN_ACTIONS):
            if raw.lower() not in _TRUE + _FALSE:
                raise SettingError(flag, f"{raw!r}: use true or false")
            on = raw.lower() in _TRUE
            return not on if isinstance(action, argparse._StoreFalseAction) else on
        return action.type(raw) if callable(action.type) else raw

    def error(self, message: str) -> Any:
        """argparse's own errors (an unknown flag, a missing value): one line and exit status 2, as ours."""
        e = UsageError(message)
        e.prog = self.prog
        raise e


# Converters: `type=` for SettingsParser flags. Each takes the raw text and returns the value or raises
# argparse.ArgumentTypeError with the problem (the parser adds the flag and its variable).


def at_least(least: int) -> Callable[[str], int]:
    """An integer that is at least `least`."""

    def convert(raw: str) -> int:
        value = _number(raw, int)
        if value < least:
            raise argparse.ArgumentTypeError(f"{raw.strip()} is less than {least}")
        return value

    return convert


def number_at_least(least: float) -> Callable[[str], float]:
    """A number (float) that is at least `least`."""

    def convert(raw: str) -> float:
        value = _number(raw, float)
        if not value >= least:  # NaN too
            raise argparse.ArgumentTypeError(f"{raw.strip()} is less than {least:g}")
        return value

    return convert


def positive(raw: str) -> float:
    """A number greater than 0 (seconds, rates)."""
    value = _number(raw, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{raw.strip()} is not a positive number")
    return value


def fraction(raw: str) -> float:
    """A number from 0 to 1."""
    value = _number(raw, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{raw.strip()} is not between 0 and 1")
    return value


def _number(raw: str, kind: Callable[[str], T]) -> T:
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{raw!r} is not {what}") from None


def host_port(value: str) -> tuple[str, int]:
    """`HOST:PORT` → (host, port); an empty host is every address (`0.0.0.0`)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or len(port) > 5 or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host or "0.0.0.0", int(port)


def http_url(value: str) -> str:
    """An `http://` or `https://` URL with a host."""
    try:
        u = urllib.parse.urlsplit(value)
        u.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        u = None
    if u is None or u.scheme not in ("http", "https") or not u.hostname:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http:// or https:// URL")
    return value


def existing_file(value: str) -> Path:
    """The path of a file that exists."""
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"{value!r} is not an existing file")
    return Path(value)


def ipv4(value: str) -> str:
    """An IPv4 address in dotted form."""
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address") from None


def absolute_paths(value: str) -> frozenset[str]:
    """A comma-separated list of absolute paths (empty items ignored)."""
    paths = frozenset(p.strip() for p in value.split(",") if p.strip())
    bad = sorted(p for p in paths if not os.path.isabs(p))
    if bad:
        raise argparse.ArgumentTypeError(f"not absolute paths: {', '.join(bad)}")
    return paths
