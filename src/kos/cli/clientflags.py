"""`--server` and `--kubeconfig`: how every command that talks to the apiserver says where it is and who calls.

As kubectl: `--kubeconfig FILE` (or `KOS_KUBECONFIG`) gives the server, the CA to trust and the client's
certificate or token (its current context); `--server URL` alone is plain http, or https verified against
the system's CAs; with both, `--server` replaces the kubeconfig's server and the rest of the kubeconfig
still applies. Several apiservers are `--server URL1,URL2,...` (or the kubeconfig's `kos.example.com/servers`
extension, docs/operations.md): the client fails over between them (kos.client.failover). The file is read (and its certificate and key loaded) while the flags are checked, so a bad
kubeconfig is one line naming the file and what is wrong, and exit status 2.
"""

from __future__ import annotations

import argparse

from kos.cli.settings import SettingError, http_url
from kos.client.config import ClientConfig, split_servers
from kos.pki.kubeconfig import KubeConfigError

__all__ = ["add_client_flags", "client_config", "node_identity"]

NODE_USER_PREFIX = "system:node:"
"""The user name prefix of a node's identity (Kubernetes' node authorizer, `system:node:<name>`)."""


def add_client_flags(p: argparse.ArgumentParser, *, what: str = "the kos apiserver") -> None:
    """Add `--server URL` and `--kubeconfig FILE` (neither required by itself: `client_config` checks)."""
    p.add_argument(
        "--server", type=_optional_urls, default="",
        help=f"URL of {what}, or several comma-separated (failover) (overrides the kubeconfig's servers)",
    )  # fmt: skip
    p.add_argument(
        "--kubeconfig", default="", help="a kubeconfig: the server, the CA to trust, the client certificate or token"
    )


def client_config(args: argparse.Namespace, *, required: bool = True) -> ClientConfig | None:
    """What `Client` needs from `--server` and `--kubeconfig`; None when neither is given and not `required`.

    Raises SettingError when neither is given (and `required`), or when the kubeconfig cannot be used.
    """
    if args.kubeconfig:
        try:
            return ClientConfig.from_kubeconfig(args.kubeconfig, server=args.server or None)
        except KubeConfigError as e:
            raise SettingError("--kubeconfig", str(e)) from None
    if args.server:
        return ClientConfig.for_server(args.server)
    if required:
        raise SettingError("--server", "required: give the flag, or --kubeconfig / KOS_KUBECONFIG")
    return None


def node_identity(config: ClientConfig) -> str | None:
    """The node a kubeconfig's client certificate names (`system:node:<name>`), or None if it names none.

    Raises SettingError if the certificate cannot be read.
    """
    if config.kubeconfig is None:
        return None
    try:
        user = config.kubeconfig.client_certificate_user()
    except KubeConfigError as e:
        raise SettingError("--kubeconfig", str(e)) from None
    if user is None or not user[0].startswith(NODE_USER_PREFIX):
        return None
    return user[0][len(NODE_USER_PREFIX) :]


def _optional_urls(value: str) -> str:
    """`value` if it is empty or a comma-separated list of http:// or https:// URLs, all of one scheme."""
    if not value:
        return value
    for url in value.split(","):
        http_url(url.strip())
    try:
        split_servers(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value
