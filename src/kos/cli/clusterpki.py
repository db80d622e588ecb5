"""The identities of a one-machine kos (`kos up`, `kos demo`): a PKI and a token file in the state directory.

    <state-dir>/pki/ca.crt, ca.key                  the cluster CA (kept across runs: never replaced while valid)
    <state-dir>/pki/apiserver.crt, .key             the apiserver's serving certificate (localhost, 127.0.0.1,
                                                    the --listen host)
    <state-dir>/pki/front-proxy-ca.crt, .key        as `kos certs init` makes it (unused by kos up itself)
    <state-dir>/pki/admin.crt, .key                 `kos:admin` in `system:masters`
    <state-dir>/pki/controller-manager.crt, .key    `system:kos:controller-manager` (a client certificate)
    <state-dir>/pki/controller-manager-serving.crt, .key   the controller manager's metrics listener
    <state-dir>/pki/simnodes-serving.crt, .key      the simulated nodes' endpoint
    <state-dir>/kubeconfig                          the admin's kubeconfig (kubectl --kubeconfig, 0600)
    <state-dir>/controller-manager.kubeconfig       the controller manager's (0600)
    <state-dir>/node-tokens.csv                     one bearer token per simulated node (0600), Kubernetes'
                                                    token-file format: token,system:node:<name>,<name>,system:nodes
                                                    (the apiserver's --token-auth-file, kos simnodes --node-tokens)
    <state-dir>/simnodes.kubeconfig                 the simulated nodes' shared connection (0600): a token for
                                                    `system:node:kos:simnodes` in `system:nodes`
    <state-dir>/pki/etcd/ca.crt, .key               `kos up --ha` only: etcd's own CA (as kubeadm's etcd/ca), so
                                                    no kos client certificate opens etcd
    <state-dir>/pki/etcd/server.crt, .key           the etcd members' serving certificate (127.0.0.1, localhost)
    <state-dir>/pki/etcd/apiserver-etcd-client.crt, .key   the apiservers' client certificate for etcd

The directory is the one `kos certs init` writes, so `kos certs issue --pki <state-dir>/pki` mints more users.
A second start with the same state directory keeps the CA and every certificate that the CA signed, that is
valid for a while yet and (for serving certificates) names the hosts needed; it issues what is missing or
stale. Simulated nodes get bearer tokens, not certificates: a token is 32 random bytes (`secrets`), where a
certificate costs a key pair and a signature — the cost at 1,000 nodes is in bench/up_start.py. Tokens of the
nodes kept are kept too; the file holds exactly the nodes of this run.

The simulated nodes share one connection pool and one multiplexed watch connection; each node's calls carry
its own token (`Client.with_headers`), and the shared connection's watches run as `system:node:kos:simnodes`:
a node's read rights, and no write, since no attachment can name `kos:simnodes` (not a valid node name). It
is a token and not a client certificate on purpose: the x509 authenticator comes before bearer tokens in the
union (as in kube-apiserver), so a certificate on the shared connections would name every node's call.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kos.apiserver.auth.user import CONTROLLER_MANAGER, NODE_USER_PREFIX, NODES_GROUP
from kos.pki import directory
from kos.pki.authority import Identity, IPAddress, issue_client, issue_server, new_ca
from kos.pki.kubeconfig import kubeconfig, token_kubeconfig
from kos.pki.tokenfile import TokenFileError, TokenRecord, new_token, read_token_file, token_file_text
from kos.util.clusteretcd import ETCD_CLIENT, ETCD_SERVER, EtcdFiles, etcd_pki

PKI_DIR = "pki"
ADMIN_KUBECONFIG = "kubeconfig"
CONTROLLER_MANAGER_KUBECONFIG = "controller-manager.kubeconfig"
NODE_TOKENS = "node-tokens.csv"
SIMNODES_KUBECONFIG = "simnodes.kubeconfig"
SIMNODES_NODE = "kos:simnodes"
"""The pseudo-node whose token the simulated nodes' shared connection carries (not a valid node name)."""
CM_CLIENT, CM_SERVING, SIMNODES_SERVING = "controller-manager", "controller-manager-serving", "simnodes-serving"
RENEW_BEFORE = datetime.timedelta(days=7)
"""A certificate that expires sooner than this is issued again at start."""


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterIdentities:
    """The files a secure one-machine kos runs with (paths; see the module docstring)."""

    pki: Path
    ca_pem: bytes
    admin_kubeconfig: Path
    controller_manager_kubeconfig: Path
    node_tokens: Path
    simnodes_kubeconfig: Path

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    def cert(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) files of `name` (directory.APISERVER, CM_SERVING, SIMNODES_SERVING, ...)."""
        return directory.paths(self.pki, name)


def prepare(
    state_dir: Path, server: str, hosts: Sequence[str], nodes: Sequence[str], *, servers: Sequence[str] = ()
) -> ClusterIdentities:
    """Make (or keep) the PKI, kubeconfigs for `server` and the node token file in `state_dir`; with `servers`
    (several apiservers) the admin's kubeconfig also lists them all for kos clients to fail over across
    (`kos.pki.kubeconfig.SERVERS_EXTENSION`; kubectl uses `server`).

    `hosts` are the names the apiserver's certificate needs besides localhost and 127.0.0.1 (unspecified
    addresses such as 0.0.0.0 are skipped); `nodes` the simulated nodes' names. Raises directory.PKIError for
    an unreadable PKI, OSError if a file cannot be written.
    """
    pki = state_dir / PKI_DIR
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    ca = _ca(pki)
    _serving(pki, ca, directory.APISERVER, "kos-apiserver", ["localhost", "127.0.0.1", *hosts])
    _serving(pki, ca, CM_SERVING, "kos-controller-manager", ["localhost", "127.0.0.1"])
    _serving(pki, ca, SIMNODES_SERVING, "kos-simnodes", ["localhost", "127.0.0.1"])
    if not all(p.exists() for p in directory.paths(pki, directory.FRONT_PROXY_CA)):
        directory.write(pki, directory.FRONT_PROXY_CA, new_ca("kos-front-proxy-ca"), force=True)
    admin = _keep_or_issue(pki, directory.ADMIN, ca,
                           lambda: issue_client(ca, directory.ADMIN_USER, [directory.ADMIN_GROUP]))  # fmt: skip
    cm = _keep_or_issue(pki, CM_CLIENT, ca, lambda: issue_client(ca, CONTROLLER_MANAGER))
    ca_pem = ca.cert_pem()
    ids = ClusterIdentities(pki, ca_pem, state_dir / ADMIN_KUBECONFIG, state_dir / CONTROLLER_MANAGER_KUBECONFIG,
                            state_dir / NODE_TOKENS, state_dir / SIMNODES_KUBECONFIG)  # fmt: skip
    admin_kubeconfig = kubeconfig(
        server, ca_pem, admin, directory.ADMIN_USER, servers=list(servers) if len(servers) > 1 else []
    )
    directory.write_private(ids.admin_kubeconfig, admin_kubeconfig, force=True)
    directory.write_private(ids.controller_manager_kubeconfig, kubeconfig(server, ca_pem, cm, CONTROLLER_MANAGER),
                            force=True)  # fmt: skip
    tokens = write_node_tokens(ids.node_tokens, [*nodes, SIMNODES_NODE])
    shared = token_kubeconfig(server, ca_pem, node_user(SIMNODES_NODE), tokens[SIMNODES_NODE])
    directory.write_private(ids.simnodes_kubeconfig, shared, force=True)
    return ids


def prepare_etcd(state_dir: Path) -> EtcdFiles:
    """Make (or keep) etcd's CA, its members' serving certificate and the apiservers' client certificate in
    `<state-dir>/pki/etcd`. Raises directory.PKIError for an unreadable CA, OSError if a file cannot be written."""
    pki = etcd_pki(state_dir)
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    crt, key = directory.paths(pki, directory.CA)
    ca = directory.load(pki, directory.CA) if crt.exists() or key.exists() else None
    if ca is None or _expiring(ca.cert):
        ca = new_ca("kos-etcd-ca")
        directory.write(pki, directory.CA, ca, force=True)  # what the old one signed is issued again below
    _serving(pki, ca, ETCD_SERVER, "kos-etcd", ["localhost", "127.0.0.1"])
    _keep_or_issue(pki, ETCD_CLIENT, ca, lambda: issue_client(ca, "kos-apiserver"))
    return EtcdFiles(crt, *directory.paths(pki, ETCD_SERVER), *directory.paths(pki, ETCD_CLIENT))


def _ca(pki: Path) -> Identity:
    """The CA in `pki`, kept if it is there and valid for a while yet; else a new PKI (`kos certs init`'s
    files), since whatever an old CA signed is of no use without it."""
    crt, key = directory.paths(pki, directory.CA)
    if crt.exists() or key.exists():
        ca = directory.load(pki, directory.CA)  # a CA that cannot be read is an error, never silently replaced
        if not _expiring(ca.cert):
            return ca
    ca = new_ca("kos-ca")
    directory.write(pki, directory.CA, ca, force=True)
    for name in (directory.APISERVER, directory.ADMIN, CM_CLIENT, CM_SERVING, SIMNODES_SERVING):
        for path in directory.paths(pki, name):
            path.unlink(missing_ok=True)  # signed by the CA replaced: issue them again
    return ca


def _serving(pki: Path, ca: Identity, name: str, common_name: str, hosts: Sequence[str]) -> Identity:
    """A serving certificate `name` for `hosts` (unspecified addresses such as 0.0.0.0 skipped), kept or issued."""
    dns, ips = directory.split_hosts(h for h in hosts if not directory.is_unspecified(h))
    return _keep_or_issue(pki, name, ca, lambda: issue_server(ca, common_name, dns, ips), dns, ips)


def _keep_or_issue(
    pki: Path, name: str, ca: Identity, issue: Callable[[], Identity], dns: Sequence[str] = (),
    ips: Sequence[IPAddress] = (),
) -> Identity:  # fmt: skip
    """`name`'s identity from `pki` if `ca` signed it, it is not expiring and it names `dns` and `ips`; else
    `issue()`'s, written."""
    crt, key = directory.paths(pki, name)
    if crt.exists() and key.exists():
        try:
            kept = directory.load(pki, name)
        except directory.PKIError:
            kept = None
        if kept is not None and _current(kept.cert, ca.cert, dns, ips):
            return kept
    made = issue()
    directory.write(pki, name, made, force=True)
    return made


def _current(cert: x509.Certificate, ca: x509.Certificate, dns: Sequence[str], ips: Sequence[IPAddress]) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if _expiring(cert):
        return False
    if not dns and not ips:
        return True
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(dns) <= set(sans.get_values_for_type(x509.DNSName)) and set(ips) <= set(
        sans.get_values_for_type(x509.IPAddress)
    )


def _expiring(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) < RENEW_BEFORE


def node_user(node: str) -> str:
    """The user a simulated node's token authenticates as: `system:node:<node>`."""
    return NODE_USER_PREFIX + node


def write_node_tokens(path: Path, nodes: Sequence[str]) -> dict[str, str]:
    """Write one token per node to `path` (0600; user `system:node:<n>`, uid `<n>`, group `system:nodes`),
    keeping the tokens of these nodes already in the file; returns node → token. Raises OSError if it cannot
    be written."""
    kept = read_node_tokens(path)
    tokens = {n: kept.get(n) or new_token() for n in nodes}
    records = [TokenRecord(t, node_user(n), n, (NODES_GROUP,)) for n, t in tokens.items()]
    directory.write_private(path, token_file_text(records).encode(), force=True)
    return tokens


def read_node_tokens(path: Path) -> dict[str, str]:
    """node → token of the nodes' lines (`system:node:<n>` with uid `<n>`) of the token file at `path`; {} if
    there is none or it cannot be read (it is then written anew)."""
    if not path.exists():
        return {}
    try:
        records = read_token_file(path)
    except TokenFileError:
        return {}
    return {r.uid: r.token for r in records if r.user == node_user(r.uid)}
