"""The PKI directory `kos certs init` writes and `kos certs issue` (and later `kos up`) reads.

Files (PEM), named as kubeadm names them under /etc/kubernetes/pki:

    ca.crt, ca.key                      the cluster CA: signs the apiserver's certificate and every client's
    apiserver.crt, apiserver.key        the apiserver's serving certificate (SANs: the --hosts given)
    front-proxy-ca.crt, front-proxy-ca.key   the CA whose clients may assert X-Remote-User (--requestheader-client-ca-file)
    admin.crt, admin.key                the first admin (`kos:admin` in `system:masters`, ARCHITECTURE §10)

Private keys are created with mode 0600 (never readable by others, not even for a moment: the mode is given
to open(2)); certificates 0644. An existing file is never overwritten unless the caller asks (`force`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kos.pki.authority import Identity, IPAddress, PrivateKey, issue_client, issue_server, new_ca

ADMIN_USER = "kos:admin"
ADMIN_GROUP = "system:masters"
CA, APISERVER, FRONT_PROXY_CA, ADMIN = "ca", "apiserver", "front-proxy-ca", "admin"
INIT_NAMES = (CA, APISERVER, FRONT_PROXY_CA, ADMIN)


class PKIError(Exception):
    """The PKI directory cannot be written or read as asked (a file exists, a file is missing or bad)."""


def split_hosts(hosts: Iterable[str]) -> tuple[list[str], list[IPAddress]]:
    """Host names and IP addresses → (DNS names, IPs), order kept, duplicates dropped.

    Raises ValueError for an item that is neither an IP address nor a DNS name (RFC 1123 labels, a leading
    `*.` wildcard allowed).
    """
    dns: list[str] = []
    ips: list[IPAddress] = []
    for raw in hosts:
        host = raw.strip().strip("[]")
        if not host:
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if not _is_dns_name(host):
                raise ValueError(f"{raw.strip()!r} is neither an IP address nor a DNS name") from None
            if host.lower() not in dns:
                dns.append(host.lower())
        else:
            if ip not in ips:
                ips.append(ip)
    return dns, ips


def is_unspecified(host: str) -> bool:
    """Whether `host` is an unspecified address (`0.0.0.0`, `::`, bracketed or not): a listen address that
    names no host a certificate could be for."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _is_dns_name(host: str) -> bool:
    labels = host.removeprefix("*.").rstrip(".").split(".")
    return len(host) <= 253 and all(
        0 < len(label) <= 63 and label.isascii() and label.replace("-", "").isalnum() and label[0] != "-" != label[-1]
        for label in labels
    )


def init(pki: Path, hosts: Sequence[str], *, force: bool = False, peer: bool = False) -> dict[str, Identity]:
    """Create the CA, the apiserver serving certificate for `hosts`, the front-proxy CA and the admin in `pki`.

    With `peer` the serving certificate is also a client certificate (authority.issue_server), for a PKI
    whose servers dial each other with it: etcd's members.

    Returns the identities by name (`INIT_NAMES`). Raises PKIError if any of their files exists and not
    `force`, ValueError for a bad host (before anything is written).
    """
    dns, ips = split_hosts(hosts)
    if not dns and not ips:
        raise ValueError("give at least one host name or IP address for the apiserver's certificate")
    existing = [p for n in INIT_NAMES for p in paths(pki, n) if p.exists()]
    if existing and not force:
        raise PKIError(f"{pki} already holds a PKI ({existing[0].name}); use --force to replace it")
    ca = new_ca("kos-ca")
    made = {
        CA: ca,
        APISERVER: issue_server(ca, "kos-apiserver", dns, ips, peer=peer),
        FRONT_PROXY_CA: new_ca("kos-front-proxy-ca"),
        ADMIN: issue_client(ca, ADMIN_USER, [ADMIN_GROUP]),
    }
    pki.mkdir(parents=True, exist_ok=True)
    for name, identity in made.items():
        write(pki, name, identity, force=True)
    return made


def paths(pki: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) paths of `name` in `pki`: `name.crt`, `name.key`."""
    return pki / f"{name}.crt", pki / f"{name}.key"


def write(pki: Path, name: str, identity: Identity, *, force: bool = False) -> None:
    """Write `name.crt` (0644) and `name.key` (0600). Raises PKIError if one exists and not `force`."""
    crt, key = paths(pki, name)
    write_private(key, identity.key_pem(), force=force)
    _write(crt, identity.cert_pem(), 0o644, force=force)


def write_private(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write a secret (a key, a kubeconfig holding one) with mode 0600. Raises PKIError if it exists and not `force`."""
    _write(path, data, 0o600, force=force)


def _write(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    if force:
        path.unlink(missing_ok=True)  # a fresh inode: the mode below applies even if the old file was wider
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise PKIError(f"{path} exists; use --force to replace it") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # whatever the umask took away


def load(pki: Path, name: str) -> Identity:
    """Read `name.crt` and `name.key` from `pki`. Raises PKIError if either is missing or unreadable."""
    crt, key_path = paths(pki, name)
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise PKIError(f"cannot read {name} from {pki}: {e}") from None
    if not isinstance(key, PrivateKey):
        raise PKIError(f"{key_path} is not an ECDSA key")
    return Identity(cert, key)
