"""`kos <subcommand>`: the one console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kos import __version__
from kos.cli import agent, apiserver, controller_manager, demo, driver, simnodes, up, verify
from kos.cli.common import EnvDefaultsParser, UsageError

SUBCOMMANDS = {
    "up": (up, "run apiserver, controller manager and simulated nodes on this machine until Ctrl-C"),
    "demo": (demo, "kos up, one driver run, the invariants checked, a summary and a report"),
    "apiserver": (apiserver, "serve the kos API (Subnets, NetworkAttachments, IPLocks)"),
    "controller-manager": (controller_manager, "run the subnet validator and IPAM"),
    "agent": (agent, "run one node's connection agent"),
    "simnodes": (simnodes, "run N simulated nodes (agents with the sim fabric) in one process"),
    "driver": (driver, "create and delete NetworkAttachments on a schedule and report latencies"),
    "verify": (verify, "check the system-wide invariants; exit 1 on a violation"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = EnvDefaultsParser(prog="kos", description="kos: virtual networks on Kubernetes API machinery")
    parser.add_argument("--version", action="version", version=f"kos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=EnvDefaultsParser)
    try:
        for name, (module, help_text) in SUBCOMMANDS.items():
            p = sub.add_parser(name, help=help_text, description=help_text)
            module.add_arguments(p)
            p.set_defaults(run=module.run)
        tp = sub.add_parser("trace", help="ask the simulated fabric whether one NA reaches another, and why not")
        verify.add_trace_arguments(tp)
        tp.set_defaults(run=verify.run_trace)
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"kos: {e}", file=sys.stderr)
        return 2
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    rc: int = args.run(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
