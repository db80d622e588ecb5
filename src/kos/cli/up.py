"""`kos up [--nodes N] [--storage URL] [--state-dir DIR] [--listen HOST:PORT] [--insecure] [--ha] [--monitoring]`:
kos on this machine until Ctrl-C.

`--ha`: a 3-member etcd (the `etcd` binary on PATH, mutual TLS), two apiservers over it, two controller
managers; where each process is goes to `<state-dir>/cluster.json` (kos.util.clusterfile) in every mode.

`--monitoring`: also a Prometheus scraping every process listed there, when the `prometheus` binary is
installed (kos.cli.monitoring; docs/monitoring.md).

Secure by default: HTTPS everywhere, the PKI in `<state-dir>/pki`, the admin's kubeconfig in
`<state-dir>/kubeconfig` (kos.cli.clusterpki lists the files); `--insecure` serves plain HTTP with no
authentication, for benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path

from kos.cli.apiserver import storage_url
from kos.cli.cluster import Cluster, ClusterSettings
from kos.cli.common import UsageError, add_logging_flags, run_until_signalled
from kos.cli.settings import at_least, host_port

UP_LINE = "Ctrl-C stops everything"
"""The end of the message `kos up` prints once everything is up (tests and benchmarks wait for it)."""


def optional_storage_url(value: str) -> str:
    """A storage URL, or empty for SQLite in the state directory."""
    return storage_url(value) if value else value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=at_least(1), default=50, help="simulated nodes")
    p.add_argument("--storage", type=optional_storage_url, default="",
                   help="storage URL (default: sqlite in the state directory)")  # fmt: skip
    p.add_argument(
        "--state-dir", type=Path, default=Path(".kos"), help="where state, logs and the kubeconfig go (.kos)"
    )
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 8080), help="HOST:PORT for the apiserver")
    p.add_argument("--ha", action="store_true",
                   help="a local 3-member etcd cluster (needs the etcd binary), two apiservers over it (--listen "
                        "and a free port) and two controller managers")  # fmt: skip
    add_monitoring_flag(p)
    add_insecure_flag(p)
    add_logging_flags(p)  # fmt: skip


def add_monitoring_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--monitoring", action="store_true",
                   help="also run Prometheus (the prometheus binary, Debian: apt-get install prometheus), scraping "
                        "every process in <state-dir>/cluster.json (docs/monitoring.md)")  # fmt: skip


def monitoring_note(s: ClusterSettings, prometheus: str | None) -> str:
    """What `--monitoring` gave: Prometheus' URL, or why there is none ("" without `--monitoring`)."""
    if not s.monitoring:
        return ""
    if prometheus is None:
        return "  no Prometheus: the prometheus binary is not on PATH (Debian: apt-get install prometheus)\n"
    ca = "" if s.insecure else f" (HTTPS: verify with {s.state_dir / 'pki' / 'ca.crt'})"
    return (
        f"  prometheus {prometheus}{ca}, scraping every process; dashboards and alerts: deploy/monitoring, "
        "docs/monitoring.md\n"
    )


def add_insecure_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure", action="store_true",
                   help="plain HTTP and no authentication on every listener (for benchmarks; default: HTTPS, "
                        "client certificates and node tokens from a PKI in the state directory)")  # fmt: skip


def settings_from(args: argparse.Namespace) -> ClusterSettings:
    host, port = args.listen
    return ClusterSettings(state_dir=args.state_dir, nodes=args.nodes, storage=args.storage,
                           host=host, port=port, insecure=args.insecure, ha=args.ha,
                           monitoring=args.monitoring)  # fmt: skip


def run(s: ClusterSettings) -> int:
    if s.ha and shutil.which("etcd") is None:
        print("kos up: --ha needs the etcd binary on PATH (Debian: apt-get install etcd-server)", file=sys.stderr)
        return 2

    async def main(stop: asyncio.Event) -> int:
        try:
            cluster = Cluster(s)
        except RuntimeError as e:
            raise UsageError(str(e)) from None
        try:
            await cluster.start()
        except RuntimeError as e:
            await cluster.stop()
            raise UsageError(str(e)) from None
        client = " ".join(cluster.client_args())
        security = "plain HTTP, no authentication" if s.insecure else f"HTTPS, PKI in {s.state_dir / 'pki'}"
        storage = "a 3-member etcd" if s.ha else cluster.storage
        print(f"kos is up: apiserver {', '.join(cluster.servers)} ({storage}; {security}), {s.nodes} simulated "
              f"nodes (fabric endpoint {cluster.nodes_url})\n"
              f"  every process (pid, url, /metrics): {cluster.cluster_file}\n"
              f"  kubectl --kubeconfig {cluster.kubeconfig} get sn,na,ipl -A\n"
              + "".join(f"  kubectl --kubeconfig {cluster.kubeconfig} --server {u} get sn,na,ipl -A\n"
                        for u in cluster.servers[1:])
              + f"  kos driver {client} --nodes node-:{s.nodes}\n"
              f"  kos verify {' '.join(cluster.verify_args())}\n"
              + monitoring_note(s, cluster.prometheus) +
              f"logs in {s.state_dir / 'logs'}; {UP_LINE}", flush=True)  # fmt: skip
        await stop.wait()
        print("kos: stopping", flush=True)
        await cluster.stop()
        return 0

    return run_until_signalled(main, component="up")
