"""`kos controller-manager --kubeconfig FILE | --server URL`: the subnet validator and IPAM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

from kos.cli import serving
from kos.cli.clientflags import add_client_flags, client_config
from kos.cli.common import add_logging_flags, run_until_signalled
from kos.cli.settings import SettingError, at_least, host_port, number_at_least
from kos.controllers.manager import CONTROLLERS, ControllerManager, Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_client_flags(p)
    p.add_argument(
        "--controllers",
        type=controller_list,
        default=CONTROLLERS,
        help=f"comma-separated controllers to run (of {', '.join(CONTROLLERS)})",
    )
    p.add_argument("--workers", type=at_least(1), default=None, help="workers per controller (overrides the two below)")
    p.add_argument("--ipam-workers", type=at_least(1), default=32, help="IPAM workers (concurrent syncs)")
    p.add_argument("--subnet-validator-workers", type=at_least(1), default=4, help="subnet validator workers")
    p.add_argument("--qps", type=number_at_least(0), default=0.0, help="client request rate limit (0: none)")
    p.add_argument("--burst", type=at_least(1), default=200, help="client burst when --qps is set")
    p.add_argument("--metrics-listen", type=host_port, default=("127.0.0.1", 9295), help="HOST:PORT for /metrics")
    serving.add_arguments(p, "--metrics-listen")
    p.add_argument("--seed", type=int, default=None, help="seed for address choice (reproducible runs)")
    p.add_argument(
        "--watch-mux",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="carry the informers' watches over one multiplexed connection",
    )
    add_logging_flags(p)  # fmt: skip


def controller_list(value: str) -> tuple[str, ...]:
    """Comma-separated names from CONTROLLERS, at least one."""
    chosen = tuple(c.strip() for c in value.split(",") if c.strip())
    unknown = [c for c in chosen if c not in CONTROLLERS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(CONTROLLERS)}"
        )
    return chosen


@dataclasses.dataclass(frozen=True, slots=True)
class ControllerManagerCommand:
    """Everything `kos controller-manager` runs with, checked: the manager's settings and how its metrics
    listener serves."""

    settings: Settings
    tls: serving.ServingTLS


def settings_from(args: argparse.Namespace) -> ControllerManagerCommand:
    return ControllerManagerCommand(manager_settings(args), serving.settings_from(args))


def manager_settings(args: argparse.Namespace) -> Settings:
    ipam_workers = args.workers or args.ipam_workers
    sv_workers = args.workers or args.subnet_validator_workers
    chosen = args.controllers
    host, port = args.metrics_listen
    client = client_config(args)
    assert client is not None
    return Settings(
        server=client.server, client=client, controllers=chosen, ipam_workers=ipam_workers, validator_workers=sv_workers,
        qps=args.qps, burst=args.burst, metrics_host=host, metrics_port=port, seed=args.seed,
        watch_mux=args.watch_mux,
    )  # fmt: skip


def run(command: ControllerManagerCommand) -> int:
    settings = command.settings

    async def main(stop: asyncio.Event) -> int:
        try:
            ctx = serving.server_context(command.tls, settings.metrics_host, component="kos-controller-manager")
        except (OSError, ValueError) as e:
            raise SettingError(serving.CERT_FLAG, f"cannot serve TLS with it: {e}") from None
        cm = ControllerManager(dataclasses.replace(settings, metrics_ssl=ctx))
        try:
            await cm.start()
        except OSError as e:
            where = f"{settings.metrics_host}:{settings.metrics_port}"
            raise SettingError("--metrics-listen", f"cannot serve metrics on {where}: {e}") from None
        print(f"kos controller-manager running ({', '.join(cm.settings.controllers)})", flush=True)
        await stop.wait()
        await cm.stop()
        return 0

    return run_until_signalled(main, component="controller-manager")
