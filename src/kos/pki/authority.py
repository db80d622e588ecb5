"""A certificate authority: a key and a self-signed CA certificate, and the certificates it signs.

Shapes follow kubeadm (`kubernetes/cmd/kubeadm/app/util/pkiutil`): a CA valid 10 years with BasicConstraints
CA (critical) and keyCertSign; leaves valid 1 year, a server certificate with serverAuth and the SANs given,
a client certificate with clientAuth whose subject is CN = user name and one O per group — the way
kube-apiserver's x509 authenticator reads a user (`k8s.io/apiserver/pkg/authentication/request/x509`).
Keys are ECDSA P-256: a key and a signature take well under a millisecond, so minting an identity per
simulated node stays cheap (docs/operations.md, "Certificates"). Certificates start 5 minutes in the past
to allow for clock skew between machines, as kubeadm's do.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
CLOCK_SKEW = datetime.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        """The certificate, PEM-encoded."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key, PEM-encoded PKCS#8 without a passphrase."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def new_key() -> PrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def new_ca(common_name: str, *, now: datetime.datetime | None = None) -> Identity:
    """A self-signed CA certificate (CN = `common_name`, valid `CA_VALIDITY`) and its key."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = (now or _now()) - CLOCK_SKEW
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(cert, key)


def issue_server(
    ca: Identity, common_name: str, dns_names: Sequence[str], ips: Sequence[IPAddress], *, peer: bool = False
) -> Identity:
    """A serving certificate signed by `ca` for these DNS names and IP addresses (its SANs, exactly these).

    With `peer`, the certificate also authenticates its holder as a client (extended key usage serverAuth
    and clientAuth): an etcd member dials its peers with its `--peer-cert-file`, and etcd checks that
    certificate for client use (etcd's docs, "Transport security model": peer certificates need both).
    Raises ValueError if there is neither a DNS name nor an IP address (a client could match nothing).
    """
    if not dns_names and not ips:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ip) for ip in ips]
    extensions: list[x509.ExtensionType] = [
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, *([ExtendedKeyUsageOID.CLIENT_AUTH] if peer else [])]),
        x509.SubjectAlternativeName(sans),
    ]
    return _issue(ca, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), extensions)


def issue_client(ca: Identity, user: str, groups: Sequence[str] = ()) -> Identity:
    """A client certificate signed by `ca`: CN = `user`, one O per group (in order), clientAuth.

    Raises ValueError for an empty user name.
    """
    if not user:
        raise ValueError("a client identity needs a user name")
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    return _issue(ca, x509.Name(attrs), [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])])


def user_of(cert: x509.Certificate) -> tuple[str, list[str]]:
    """(user, groups) as kube-apiserver's x509 authenticator reads them: CN and every O."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    groups = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (str(cn[0].value) if cn else ""), groups


def _issue(ca: Identity, subject: x509.Name, extensions: Sequence[x509.ExtensionType]) -> Identity:
    key = new_key()
    start = _now() - CLOCK_SKEW
    end = min(start + LEAF_VALIDITY, ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca.cert), critical=False)
    )
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return Identity(builder.sign(ca.key, hashes.SHA256()), key)


def _authority_key_id(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key())  # type: ignore[arg-type]


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
