"""`kos certs init|issue`: the PKI a secure kos runs with, made for users (files: kos.pki.directory).

    kos certs init  --pki DIR --hosts H1,H2,... [--server URL] [--peer] [--force]
    kos certs issue --pki DIR --user NAME [--group G]... --kubeconfig-out FILE --server URL [--force]

`init` creates the cluster CA, the apiserver's serving certificate for the hosts given (DNS names and IP
addresses, exactly those: add `localhost`/`127.0.0.1` or `<service>.<namespace>.svc` if clients use them),
the front-proxy CA and an admin identity (`kos:admin` in `system:masters`), with `DIR/admin.kubeconfig` when
`--server` names the apiserver. `issue` mints one client identity signed by the CA in DIR as a ready
kubeconfig. Neither replaces an existing file without `--force`. `init --peer` makes the serving
certificate a client certificate too, for a PKI of servers that dial each other with it (etcd's members:
`--peer-cert-file` with `--peer-client-cert-auth`; docs/deploy.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from kos.cli.common import add_logging_flags
from kos.cli.settings import SettingError, SettingsParser, UsageError, http_url
from kos.pki import directory
from kos.pki.authority import issue_client
from kos.pki.kubeconfig import kubeconfig

ADMIN_KUBECONFIG = "admin.kubeconfig"


def hosts_list(value: str) -> tuple[str, ...]:
    """`H1,H2,...`: host names and IP addresses (at least one), each checked."""
    hosts = tuple(h.strip() for h in value.split(",") if h.strip())
    try:
        directory.split_hosts(hosts)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not hosts:
        raise argparse.ArgumentTypeError("give at least one host name or IP address")
    return hosts


def add_arguments(p: SettingsParser) -> None:
    sub = p.add_subparsers(dest="certs_command", metavar="ACTION", parser_class=SettingsParser, required=True)
    init = sub.add_parser("init", help="create the CA, the apiserver certificate, the front-proxy CA and an admin")
    init.add_argument("--pki", type=Path, required=True, help="directory to create the PKI in")
    init.add_argument("--hosts", type=hosts_list, required=True,
                      help="the apiserver certificate's names: DNS names and IP addresses, comma-separated")  # fmt: skip
    init.add_argument("--server", type=optional_url, default="", help="the apiserver URL for DIR/admin.kubeconfig")
    init.add_argument("--peer", action="store_true",
                      help="the serving certificate also authenticates as a client (etcd members dialling their "
                           "peers with it)")  # fmt: skip
    init.add_argument("--force", action="store_true", help="replace an existing PKI")
    add_logging_flags(init)
    issue = sub.add_parser("issue", help="mint one client identity as a kubeconfig")
    issue.add_argument("--pki", type=Path, required=True, help="directory holding ca.crt and ca.key")
    issue.add_argument("--user", required=True, help="the user name (the certificate's CN)")
    issue.add_argument("--group", action="append", default=[], help="a group (an O); repeat for more")
    issue.add_argument("--kubeconfig-out", type=Path, required=True, help="the kubeconfig file to write")
    issue.add_argument("--server", type=http_url, required=True, help="URL of the kos apiserver")
    issue.add_argument("--force", action="store_true", help="replace an existing --kubeconfig-out file")
    add_logging_flags(issue)


def optional_url(value: str) -> str:
    """An http(s) URL, or empty for none."""
    return http_url(value) if value else value


@dataclasses.dataclass(frozen=True, slots=True)
class InitSettings:
    """What `kos certs init` runs with, checked."""

    pki: Path
    hosts: tuple[str, ...]
    server: str
    force: bool
    peer: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class IssueSettings:
    """What `kos certs issue` runs with, checked."""

    pki: Path
    user: str
    groups: tuple[str, ...]
    kubeconfig_out: Path
    server: str
    force: bool


def settings_from(args: argparse.Namespace) -> InitSettings | IssueSettings:
    try:
        return _init_settings(args) if args.certs_command == "init" else _issue_settings(args)
    except UsageError as e:
        e.prog = f"kos certs {args.certs_command}"
        raise


def _init_settings(args: argparse.Namespace) -> InitSettings:
    existing = [p for n in directory.INIT_NAMES for p in directory.paths(args.pki, n) if p.exists()]
    if existing and not args.force:
        raise SettingError("--pki", f"{args.pki} already holds a PKI ({existing[0].name}); use --force to replace it")
    return InitSettings(pki=args.pki, hosts=args.hosts, server=args.server, force=args.force, peer=args.peer)


def _issue_settings(args: argparse.Namespace) -> IssueSettings:
    if not args.user.strip():
        raise SettingError("--user", "give a user name")
    ca_crt, ca_key = directory.paths(args.pki, directory.CA)
    if not (ca_crt.is_file() and ca_key.is_file()):
        raise SettingError("--pki", f"{args.pki} holds no CA ({ca_crt.name}, {ca_key.name}); run kos certs init")
    if args.kubeconfig_out.exists() and not args.force:
        raise SettingError("--kubeconfig-out", f"{args.kubeconfig_out} exists; use --force to replace it")
    groups = args.group if isinstance(args.group, list) else str(args.group).split(",")  # KOS_GROUP=a,b
    return IssueSettings(pki=args.pki, user=args.user.strip(), groups=tuple(g.strip() for g in groups if g.strip()),
                         kubeconfig_out=args.kubeconfig_out, server=args.server, force=args.force)  # fmt: skip


def run(settings: InitSettings | IssueSettings) -> int:
    """Write the files; a file that cannot be written is one line on standard error and exit status 2."""
    init = isinstance(settings, InitSettings)
    try:
        if isinstance(settings, InitSettings):
            _init(settings)
        else:
            _issue(settings)
    except (directory.PKIError, OSError, ValueError) as e:
        print(f"kos certs {'init' if init else 'issue'}: {e}", file=sys.stderr)
        return 2
    return 0


def _init(s: InitSettings) -> None:
    made = directory.init(s.pki, s.hosts, force=s.force, peer=s.peer)
    print(f"wrote the PKI in {s.pki}: " + ", ".join(f"{n}.crt/.key" for n in made), file=sys.stderr)
    path = s.pki / ADMIN_KUBECONFIG
    if not s.server:
        path.unlink(missing_ok=True)  # one left by an earlier init would name the replaced CA
    else:
        config = kubeconfig(s.server, made[directory.CA].cert_pem(), made[directory.ADMIN], directory.ADMIN_USER)
        directory.write_private(path, config, force=True)
        print(f"wrote {path} for {directory.ADMIN_USER} at {s.server}", file=sys.stderr)


def _issue(s: IssueSettings) -> None:
    ca = directory.load(s.pki, directory.CA)
    identity = issue_client(ca, s.user, s.groups)
    directory.write_private(s.kubeconfig_out, kubeconfig(s.server, ca.cert_pem(), identity, s.user), force=s.force)
    print(f"wrote {s.kubeconfig_out} for {s.user} ({', '.join(s.groups) or 'no groups'})", file=sys.stderr)
