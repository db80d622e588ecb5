"""`kos controller-manager --kubeconfig FILE | --server URL`: the subnet validator and IPAM.

Leader election is on by default (`--no-leader-elect` turns it off): a process cannot know whether others run,
and with one replica it costs one Lease write per retry period. The flags and defaults are
kube-controller-manager's (client-go's 15 s / 10 s / 2 s), with the Lease `kube-system/kos-controller-manager`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

from kos.api.types import LEADER_ELECTION_NAMESPACE
from kos.cli import serving
from kos.cli.clientflags import add_client_flags, client_config
from kos.cli.common import add_logging_flags, run_until_signalled
from kos.cli.settings import SettingError, at_least, host_port, number_at_least
from kos.controllers.leaderelection import DEFAULT_NAME, LeaderElectionConfig, default_identity
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
    add_leader_election_flags(p)
    add_logging_flags(p)  # fmt: skip


def add_leader_election_flags(p: argparse.ArgumentParser) -> None:
    """kube-controller-manager's leader-election flags (k8s.io/component-base/config/options), durations as
    seconds or Go-style (`15s`, `500ms`, `1m`)."""
    p.add_argument("--leader-elect", default=True, action=argparse.BooleanOptionalAction,
                   help="run the controllers only while holding the leader Lease (on by default)")  # fmt: skip
    p.add_argument("--leader-elect-lease-duration", type=duration, default=15.0,
                   help="how long candidates wait after the leader's last renewal before taking over")  # fmt: skip
    p.add_argument("--leader-elect-renew-deadline", type=duration, default=10.0,
                   help="how long the leader keeps trying to renew before it stops leading")  # fmt: skip
    p.add_argument("--leader-elect-retry-period", type=duration, default=2.0,
                   help="how long candidates wait between attempts to acquire or renew (jittered)")  # fmt: skip
    p.add_argument("--leader-elect-resource-name", default=DEFAULT_NAME, help="name of the Lease")
    p.add_argument("--leader-elect-resource-namespace", default=LEADER_ELECTION_NAMESPACE,
                   help="namespace of the Lease (the built-in policy grants the controller manager kube-system)")  # fmt: skip
    p.add_argument("--leader-elect-identity", default="", help="holder identity (default <hostname>_<uuid>)")


_UNITS = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))


def duration(value: str) -> float:
    """Seconds from `15`, `15s`, `1.5s`, `500ms`, `1m` or `1h`; positive."""
    v = value.strip()
    scale = 1.0
    for suffix, factor in _UNITS:
        if v.endswith(suffix) and not (suffix == "s" and v.endswith("ms")):
            v, scale = v[: -len(suffix)], factor
            break
    try:
        seconds = float(v) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration such as 15s, 500ms or 1m") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be positive")
    return seconds


def leader_election_config(args: argparse.Namespace) -> LeaderElectionConfig | None:
    """The election of the flags, or None with `--no-leader-elect`; SettingError for impossible timings."""
    if not args.leader_elect:
        return None
    try:
        return LeaderElectionConfig(
            name=args.leader_elect_resource_name, namespace=args.leader_elect_resource_namespace,
            identity=args.leader_elect_identity or default_identity(),
            lease_duration=args.leader_elect_lease_duration, renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period,
        )  # fmt: skip
    except ValueError as e:
        raise SettingError("--leader-elect-renew-deadline", str(e)) from None


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
        watch_mux=args.watch_mux, leader_election=leader_election_config(args),
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
        election = "" if settings.leader_election is None else f", leader election on {_lease(settings)}"
        print(f"kos controller-manager running ({', '.join(cm.settings.controllers)}{election})", flush=True)
        stopped, lost = asyncio.ensure_future(stop.wait()), asyncio.ensure_future(cm.lost.wait())
        await asyncio.wait((stopped, lost), return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        lost.cancel()
        await cm.stop()
        if cm.lost.is_set():
            print("kos controller-manager: leader election lost", file=sys.stderr, flush=True)
            return 1
        return 0

    return run_until_signalled(main, component="controller-manager")


def _lease(settings: Settings) -> str:
    le = settings.leader_election
    assert le is not None
    return f"lease {le.namespace}/{le.name} as {le.identity}"
