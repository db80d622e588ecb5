"""`kos simnodes --kubeconfig FILE | --server URL --count N [--node-tokens FILE]`: N simulated nodes (agents with
the sim fabric) in one process.

`--node-tokens` is a token file in Kubernetes' CSV format (the apiserver's `--token-auth-file`): each node's
calls carry the token whose user is `system:node:<node name>`; the shared watches run as the `--kubeconfig`
identity.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os

from kos.agent.simnodes import SimNodes
from kos.api import names
from kos.cli import serving
from kos.cli.clientflags import NODE_USER_PREFIX, add_client_flags, client_config
from kos.cli.common import add_logging_flags, run_until_signalled
from kos.cli.settings import SettingError, absolute_paths, at_least, host_port, number_at_least
from kos.client.rest import ClientConfig
from kos.pki.tokenfile import TokenFileError, read_token_file, tokens_by_user


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_client_flags(p)
    p.add_argument("--node-tokens", default="",
                   help="token file (token,user,uid,\"groups\"): each node calls as the user system:node:<name>")  # fmt: skip
    p.add_argument("--count", type=at_least(1), required=True, help="number of simulated nodes")
    p.add_argument("--name-prefix", default="node-", help="node names are <prefix>0 ... <prefix><count-1>")
    p.add_argument("--fabric", default="sim", choices=["sim"], help="the simulated nodes' fabric")
    p.add_argument("--latency", type=number_at_least(0), default=0.0,
                   help="seconds each fabric operation takes (imitates a switch)")  # fmt: skip
    p.add_argument("--workers", type=at_least(1), default=2, help="worker tasks per node")
    p.add_argument("--allowed-programs", type=absolute_paths, default=frozenset(),
                   help="comma-separated absolute paths allowed in commands")  # fmt: skip
    p.add_argument(
        "--per-node-metrics",
        action="store_true",
        help="label agent metrics with each node's name (default: one aggregate series)",
    )
    p.add_argument(
        "--listen",
        type=host_port,
        default=("127.0.0.1", 9380),
        help="HOST:PORT for the nodes endpoint (/nodes, /nodes/NAME/fabric, /trace, /metrics)",
    )
    serving.add_arguments(p, "--listen")
    add_logging_flags(p)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class SimNodesSettings:
    """Everything `kos simnodes` runs with, checked."""

    server: str
    count: int
    name_prefix: str
    latency: float
    workers: int
    allowed_programs: frozenset[str]
    per_node_metrics: bool
    listen: tuple[str, int]
    tls: serving.ServingTLS = serving.PLAIN
    """How the nodes endpoint serves (kos.cli.serving)."""
    client: ClientConfig | None = None
    """The shared connections' server and identity (`--kubeconfig`, `--server`)."""
    node_tokens: dict[str, str] | None = dataclasses.field(default=None, repr=False)
    """Node name → its bearer token (`--node-tokens`); None: every node calls as the shared identity."""


def settings_from(args: argparse.Namespace) -> SimNodesSettings:
    problems = names.dns1123_subdomain_problems(f"{args.name_prefix}{args.count - 1}")
    if problems:  # spec.node must be a valid name, so such nodes would never see an attachment
        raise SettingError("--name-prefix", f"{args.name_prefix!r} does not make valid node names: {problems[-1]}")
    client = client_config(args)
    assert client is not None
    return SimNodesSettings(
        server=client.server, client=client, node_tokens=node_tokens(args.node_tokens, args.name_prefix, args.count),
        count=args.count, name_prefix=args.name_prefix, latency=args.latency,
        workers=args.workers, allowed_programs=args.allowed_programs, per_node_metrics=args.per_node_metrics,
        listen=args.listen, tls=serving.settings_from(args),
    )  # fmt: skip


def node_tokens(path: str, prefix: str, count: int) -> dict[str, str] | None:
    """Each node's token from the token file at `path` (None without one). Raises SettingError if it cannot be
    read or some nodes have no token (naming the first few)."""
    if not path:
        return None
    try:
        by_user = tokens_by_user(read_token_file(path))
    except TokenFileError as e:
        raise SettingError("--node-tokens", str(e)) from None
    nodes = [f"{prefix}{i}" for i in range(count)]
    tokens = {n: by_user[NODE_USER_PREFIX + n] for n in nodes if NODE_USER_PREFIX + n in by_user}
    missing = [n for n in nodes if n not in tokens]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SettingError("--node-tokens", f"{path} has no token for the user {NODE_USER_PREFIX}<node> of {shown}")
    return tokens


def run(s: SimNodesSettings) -> int:
    async def main(stop: asyncio.Event) -> int:
        nodes = SimNodes(s.client or s.server, s.count, node_tokens=s.node_tokens, prefix=s.name_prefix, latency=s.latency, workers=s.workers,
                         allowed_programs=s.allowed_programs, per_node_metrics=s.per_node_metrics)  # fmt: skip
        host, port = s.listen
        try:
            ctx = serving.server_context(s.tls, host, component="kos-simnodes")
        except (OSError, ValueError) as e:
            raise SettingError(serving.CERT_FLAG, f"cannot serve TLS with it: {e}") from None
        try:
            port = await nodes.serve(host, port, ssl=ctx)
        except OSError as e:
            raise SettingError("--listen", f"cannot serve on {host}:{port}: {e}") from None
        scheme = "http" if ctx is None else "https"
        print(f"kos simnodes: nodes endpoint {scheme}://{host}:{port} (pid {os.getpid()})", flush=True)
        starting = asyncio.create_task(nodes.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and not stop.is_set():
            print(f"kos simnodes: {s.count} nodes running", flush=True)
            await stop.wait()
        starting.cancel()
        await nodes.stop()
        return 0

    return run_until_signalled(main, component="simnodes")
