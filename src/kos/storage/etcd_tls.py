"""Mutual TLS to etcd: the CA that signed etcd's serving certificates, and the client's certificate and key.

etcd secures its client port with `--cert-file/--key-file` (what it serves), `--trusted-ca-file` and
`--client-cert-auth` (the CA its clients' certificates must chain to). Its clients take the same three files
under the names etcdctl gives them, `--cacert`, `--cert` and `--key`; the storage URL uses those names
(`etcd://h1:2379,h2:2379/prefix?cacert=ca.crt&cert=client.crt&key=client.key`, kos.storage.url).

aetcd's `Client` only opens insecure channels; the store already builds its own channels from aetcd's
gRPC stubs, so TLS is grpc's `ssl_channel_credentials` on those channels. gRPC checks etcd's certificate
against `cacert` and the endpoint's host (a DNS name or IP address SAN), and offers the client certificate
when etcd asks for it.

The files are checked when the store opens (`EtcdTLS.load`: present, readable, PEM, the key matching the
certificate), so a mistake is one clear error at start-up rather than a TLS handshake failing on every
attempt until the retry window ends. They are read once: rotating etcd's client certificate means
restarting the apiserver.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable
from pathlib import Path

import grpc


class EtcdTLSError(ValueError):
    """The TLS files cannot be used (missing, unreadable, not PEM, or a key that is not the certificate's)."""


@dataclasses.dataclass(frozen=True, slots=True)
class EtcdTLS:
    """Where the TLS files are: `cacert` (PEM CA bundle), and `cert` + `key` (PEM) for client-cert auth.

    `cert` and `key` come together or not at all (without them, etcd must not require client certificates).
    """

    cacert: Path
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise EtcdTLSError("etcd TLS: give both cert and key (the client certificate and its key), or neither")

    def load(self) -> grpc.ChannelCredentials:
        """Read and check the files; the gRPC channel credentials for them.

        Raises EtcdTLSError naming the file (and what is wrong with it) when one cannot be used.
        """
        ca = _read(self.cacert, "cacert")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(cadata=ca.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise EtcdTLSError(f"etcd TLS: cacert {self.cacert} holds no PEM certificate") from None
        if self.cert is None or self.key is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        cert = _read(self.cert, "cert")
        key = _read(self.key, "key")
        try:
            ctx.load_cert_chain(self.cert, self.key, password=_encrypted(self.key))
        except ssl.SSLError as e:
            raise EtcdTLSError(
                f"etcd TLS: cert {self.cert} and key {self.key} are not a PEM certificate and its private key "
                f"({e.reason or e})"
            ) from None
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def context(self) -> ssl.SSLContext:
        """An ssl context for etcd's JSON gateway (kos.storage.etcd_gateway): verifies etcd against `cacert` and
        offers the client certificate when there is one. Call `load` first: it checks the files."""
        ctx = ssl.create_default_context(cafile=str(self.cacert))
        if self.cert is not None and self.key is not None:
            ctx.load_cert_chain(self.cert, self.key, password=_encrypted(self.key))
        return ctx

    def __str__(self) -> str:
        client = f", cert={self.cert}, key={self.key}" if self.cert is not None else ""
        return f"cacert={self.cacert}{client}"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EtcdTLSError(f"etcd TLS: {what} file {path} does not exist") from None
    except OSError as e:
        raise EtcdTLSError(f"etcd TLS: cannot read {what} file {path}: {e.strerror or e}") from None


def _encrypted(key: Path) -> Callable[[], str]:
    """load_cert_chain's password callback: called only for an encrypted key, which gRPC could not use."""

    def refuse() -> str:
        raise EtcdTLSError(f"etcd TLS: key {key} is encrypted; give an unencrypted PEM key (readable only by kos)")

    return refuse
