"""Which CA issued a client certificate: the one check both certificate authenticators make.

The TLS handshake has already verified the presented certificate against the union of the client CA and
the front-proxy CA (one `SSLContext` verifies against both), so each authenticator only needs to know
whether one of *its* CAs issued the certificate: `cryptography`'s `verify_directly_issued_by` (issuer name
and signature). A certificate issued by an intermediate that is not itself in the bundle is refused — a
bundle meant to accept such certificates lists the intermediate too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def load_cas(path: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle. Raises ValueError naming `path` if it holds none or is malformed,
    OSError if it cannot be read."""
    try:
        cas = x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as e:
        raise ValueError(f"{path}: not a PEM certificate bundle: {e}") from None
    if not cas:
        raise ValueError(f"{path}: no certificate in the bundle")
    return tuple(cas)


def parse(der: bytes) -> x509.Certificate | None:
    """The certificate of DER bytes, or None if they are not one."""
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def issued_by_any(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> bool:
    """Whether one of `cas` directly issued `cert` (issuer name and signature match)."""
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def client_usage(cert: x509.Certificate) -> bool:
    """Whether `cert` may authenticate a client: no extended key usage, or one naming clientAuth (or any),
    as Go's verifier with `KeyUsages: [ClientAuth]` (k8s.io/apiserver `pkg/authentication/request/x509`)."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku


def validity(cert: x509.Certificate) -> tuple[float, float]:
    """The certificate's validity period as POSIX seconds (not before, not after).

    The handshake checked it when the connection began; the authenticators check it again per request (one
    comparison), as Kubernetes verifies per request, so a connection outliving its certificate is refused.
    """
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def common_name(cert: x509.Certificate) -> str:
    """The subject's (first) CN, "" if none."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else ""
