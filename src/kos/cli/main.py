"""`kos <subcommand>`: the one console script, and the one settings pipeline every subcommand goes through.

parse (flags and `KOS_<FLAG>`, each value checked: `kos.cli.settings`) → `settings_from(args)` (checks across
flags; a frozen settings object) → logging set up → `run(settings)`. A `UsageError` anywhere before `run`
returns — a bad value, a refused setup — is one line on standard error and exit status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any, Protocol, cast

from kos import __version__
from kos.cli.settings import SettingsParser, UsageError
from kos.util import log


class Command(Protocol):
    """What a subcommand module provides (kos.cli.apiserver and the others)."""

    def add_arguments(self, p: SettingsParser) -> None: ...
    def settings_from(self, args: Any) -> Any: ...
    def run(self, settings: Any) -> int: ...


SUBCOMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, help). Only the chosen command's module is imported: the driver's brings matplotlib
    # (over a second of start-up), which an apiserver or an agent has no use for.
    "up": ("kos.cli.up", "run apiserver, controller manager and simulated nodes on this machine until Ctrl-C"),
    "demo": ("kos.cli.demo", "kos up, one driver run, the invariants checked, a summary and a report"),
    "apiserver": ("kos.cli.apiserver", "serve the kos API (Subnets, NetworkAttachments, IPLocks)"),
    "controller-manager": ("kos.cli.controller_manager", "run the subnet validator and IPAM"),
    "agent": ("kos.cli.agent", "run one node's connection agent"),
    "simnodes": ("kos.cli.simnodes", "run N simulated nodes (agents with the sim fabric) in one process"),
    "driver": ("kos.cli.driver", "create and delete NetworkAttachments on a schedule and report latencies"),
    "verify": ("kos.cli.verify", "check the system-wide invariants; exit 1 on a violation"),
    "trace": ("kos.cli.trace", "ask the simulated fabric whether one NA reaches another, and why not"),
    "chaos": ("kos.cli.chaos", "break a running `kos up --ha` fault by fault under a workload; check what clients saw"),
    "certs": ("kos.cli.certs", "create a PKI (CA, apiserver certificate, admin) and mint client kubeconfigs"),
    "version": ("kos.cli.version", "print the version and the commit kos was built from"),
}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen_name = next((a for a in argv if not a.startswith("-")), None)  # `kos` itself has only -h, --version
    parser = SettingsParser(prog="kos", description="kos: virtual networks on Kubernetes API machinery")
    parser.add_argument("--version", action="version", version=f"kos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=SettingsParser)
    for name, (path, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen_name:
            module = cast(Command, importlib.import_module(path))
            module.add_arguments(p)
            p.set_defaults(command_module=module)
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        return _usage(e.prog or "kos", e)
    chosen: Command | None = getattr(args, "command_module", None)
    if chosen is None:
        parser.print_help()
        return 2
    try:
        settings = chosen.settings_from(args)
    except UsageError as e:
        return _usage(e.prog or f"kos {args.command}", e)
    log.setup(args.log_level, args.log_format, args.command)
    return chosen.run(settings)


def _usage(prog: str, e: UsageError) -> int:
    print(f"{prog}: {e}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
