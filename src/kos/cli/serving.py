"""The serving flags of every kos listener other than the apiserver's: HTTPS unless told `--insecure`.

    kos controller-manager ... --metrics-listen H:P [--tls-cert-file F --tls-private-key-file K | --insecure]
    kos simnodes ...           --listen H:P         [--tls-cert-file F --tls-private-key-file K | --insecure]
    kos agent ...              --metrics-listen H:P [--tls-cert-file F --tls-private-key-file K | --insecure]

Metrics, health, the simulated fabric and its traces tell an observer what the network looks like, so they
are served over TLS like the API. With a certificate and key (PEM files, reloaded when they change, through
kos.http's serving context) a client verifies the listener against the CA that signed them; without them the
process makes a self-signed certificate at start (kos.pki: a throw-away CA and a serving certificate for
`localhost`, 127.0.0.1 and the listen host), as kube-controller-manager and kube-scheduler do when given none
(`k8s.io/apiserver/pkg/server/options.SecureServingOptions.MaybeDefaultWithSelfSignedCerts`), and logs its
SHA-256 fingerprint, so an operator can pin it. Plain HTTP only with `--insecure` (what `kos up --insecure`
passes, for benchmarks).
"""

from __future__ import annotations

import argparse
import dataclasses
import ssl
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from kos.cli.settings import SettingError, existing_file
from kos.client.config import ClientConfig
from kos.http import tls
from kos.http.tls import ReloadingContext, ServingFiles
from kos.pki import directory
from kos.pki.authority import Identity, issue_server, new_ca
from kos.util.log import get_logger

log = get_logger(__name__)

CERT_FLAG, KEY_FLAG, INSECURE_FLAG = "--tls-cert-file", "--tls-private-key-file", "--insecure"


def add_arguments(p: argparse.ArgumentParser, listener: str) -> None:
    """Add `--tls-cert-file`, `--tls-private-key-file` and `--insecure` for the listener named by the flag
    `listener` (such as "--metrics-listen")."""
    p.add_argument(CERT_FLAG, type=_optional_file, default=None,
                   help=f"certificate (PEM, chain after it) served on {listener}; reloaded when it changes "
                        "(default: a self-signed one made at start)")  # fmt: skip
    p.add_argument(KEY_FLAG, type=_optional_file, default=None, help=f"private key (PEM) of {CERT_FLAG}")
    p.add_argument(INSECURE_FLAG, action="store_true",
                   help=f"serve {listener} over plain HTTP (no TLS): for benchmarks and tests only")  # fmt: skip


def _optional_file(value: str) -> Path | None:
    return existing_file(value) if value else None


@dataclasses.dataclass(frozen=True, slots=True)
class ServingTLS:
    """How a listener serves: certificate and key files, neither (self-signed), or `insecure` (plain HTTP)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False


PLAIN = ServingTLS(insecure=True)
"""Plain HTTP (the `--insecure` of a listener)."""


def settings_from(args: argparse.Namespace) -> ServingTLS:
    """The checked serving settings. Raises SettingError for a certificate without its key (or the other way
    round), or for `--insecure` with either."""
    cert, key, insecure = args.tls_cert_file, args.tls_private_key_file, args.insecure
    if (cert is None) != (key is None):
        missing, given = (KEY_FLAG, CERT_FLAG) if key is None else (CERT_FLAG, KEY_FLAG)
        raise SettingError(missing, f"give it with {given} (a certificate and its key go together)")
    if insecure and cert is not None:
        raise SettingError(
            INSECURE_FLAG, f"plain HTTP has no use for {CERT_FLAG} and {KEY_FLAG}: give one or the other"
        )
    return ServingTLS(cert, key, insecure)


def server_context(s: ServingTLS, host: str, *, component: str) -> ssl.SSLContext | ReloadingContext | None:
    """The TLS context a listener on `host` serves with under `s` (None: plain HTTP).

    With files: a `ReloadingContext`, which follows them once the listener polls it (kos.http.probes). Without:
    a fresh self-signed certificate, whose SHA-256 fingerprint is logged (a warning: clients cannot verify it
    against a CA they know). Raises OSError or `TLSFilesError` (a ValueError) if the files do not hold a
    matching certificate and key.
    """
    if s.insecure:
        return None
    if s.cert_file is not None and s.key_file is not None:
        return ReloadingContext(ServingFiles(s.cert_file, s.key_file))
    identity = self_signed(host, component)
    log.warning(
        "serving with a self-signed certificate (no --tls-cert-file given)",
        component=component,
        sha256=fingerprint(identity),
    )
    return memory_context(identity)


def self_signed(host: str, component: str) -> Identity:
    """A serving certificate for `localhost`, 127.0.0.1 and `host` (unless a wildcard address), signed by a
    throw-away CA made for it (kube's `GenerateSelfSignedCertKey` shape: `<component>-ca@<time>`)."""
    hosts = ["localhost", "127.0.0.1"]
    if host and not directory.is_unspecified(host):
        hosts.append(host)
    dns, ips = directory.split_hosts(hosts)
    ca = new_ca(f"{component}-ca")
    return issue_server(ca, component, dns, ips)


def fingerprint(identity: Identity) -> str:
    """The certificate's SHA-256 fingerprint as `AA:BB:...` (what `openssl x509 -fingerprint -sha256` shows)."""
    return identity.cert.fingerprint(hashes.SHA256()).hex(":").upper()


def memory_context(identity: Identity) -> ssl.SSLContext:
    """A server context serving `identity`, which lives only in memory (the ssl module reads files: the PEM
    passes through a private temporary directory, removed at once)."""
    with tempfile.TemporaryDirectory(prefix="kos-tls-") as tmp:
        crt, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        directory.write_private(key, identity.key_pem())
        crt.write_bytes(identity.cert_pem())
        return tls.server_context(ServingFiles(crt, key))


NODES_CA_FLAG = "--nodes-ca-file"


def add_ca_argument(p: argparse.ArgumentParser, endpoint: str) -> None:
    """Add `--nodes-ca-file`: the CA a client of the listener named by `endpoint` verifies it against."""
    p.add_argument(NODES_CA_FLAG, type=_optional_file, default=None,
                   help=f"CA bundle (PEM) that signed the certificate of {endpoint} over https "
                        "(default: the --kubeconfig's CA, as kos up issues both; else the system's CAs)")  # fmt: skip


def kubeconfig_ca(server: str | ClientConfig) -> bytes | None:
    """The CA bundle the kubeconfig behind `server` trusts (None without a kubeconfig or a CA in it)."""
    if isinstance(server, ClientConfig) and server.kubeconfig is not None:
        return server.kubeconfig.ca_pem
    return None


def nodes_client_context(ca_file: Path | None, ca_pem: bytes | None = None) -> ssl.SSLContext | None:
    """A client context verifying a listener (host names checked, TLS 1.2 or newer) against the CA bundle in
    `ca_file`, else `ca_pem`; None when neither is given (the system's CAs). Raises SettingError (of
    `--nodes-ca-file`) for a file that holds no certificate."""
    if ca_file is None and ca_pem is None:
        return None
    try:
        if ca_file is not None:
            ctx = ssl.create_default_context(cafile=str(ca_file))
        else:
            ctx = ssl.create_default_context(cadata=(ca_pem or b"").decode())
    except (OSError, ValueError) as e:
        raise SettingError(NODES_CA_FLAG, f"cannot read a CA from {ca_file or 'the kubeconfig'}: {e}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
