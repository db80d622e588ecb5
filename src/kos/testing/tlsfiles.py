"""A throw-away PKI on disk for TLS tests: a CA, a serving certificate for 127.0.0.1 and localhost, client
identities, and the client contexts that trust the CA and present an identity.

Files are replaced the way rotation tools (and kubelet's secret volumes) replace them, by writing a new file
and renaming it over the old one, so a reader never sees half a file unless a test writes one on purpose
(`write_in_place`). Minting with `kos.pki` takes well under a millisecond per identity.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import warnings
from pathlib import Path

from kos.http.tls import ServingFiles
from kos.pki.authority import Identity, issue_client, issue_server, new_ca

SERVER_HOSTS = ["localhost"]
SERVER_IPS = [ipaddress.ip_address("127.0.0.1")]


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` at once (a new file renamed over it: a new inode)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_in_place(path: Path, data: bytes) -> None:
    """Overwrite `path` in place (the same inode), as a careless writer would: a reader may see it half done."""
    with path.open("r+b") as f:
        f.truncate(0)
        f.write(data)


class TestPKI:
    """A CA (`ca`) and a serving identity (`server`) written under `directory` as ca.pem, server.pem,
    server-key.pem; `client_ca_file` (client-ca.pem) is the bundle client certificates are checked against
    (the same CA unless `trust` rewrites it)."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, ca: Identity | None = None) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = ca or new_ca("kos-test-ca")
        self.server = self.new_server()
        self.ca_file = directory / "ca.pem"
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server-key.pem"
        self.client_ca_file = directory / "client-ca.pem"
        write_atomically(self.ca_file, self.ca.cert_pem())
        self.install(self.server)
        self.trust(self.ca)

    def new_server(self, ca: Identity | None = None) -> Identity:
        """A fresh serving identity for 127.0.0.1 and localhost, signed by `ca` (this PKI's CA by default)."""
        return issue_server(ca or self.ca, "kos-apiserver", SERVER_HOSTS, SERVER_IPS)

    def install(self, server: Identity) -> None:
        """Make `server` the serving certificate and key on disk (key first, then certificate)."""
        write_atomically(self.key_file, server.key_pem())
        write_atomically(self.cert_file, server.cert_pem())

    def trust(self, *cas: Identity) -> None:
        """Make the client CA bundle hold exactly `cas`."""
        write_atomically(self.client_ca_file, b"".join(ca.cert_pem() for ca in cas))

    def files(self, *, client_cas: bool = True) -> ServingFiles:
        """The serving files, with the client CA bundle unless `client_cas` is false."""
        cas = (self.client_ca_file,) if client_cas else ()
        return ServingFiles(self.cert_file, self.key_file, cas)

    def client(self, user: str, groups: tuple[str, ...] = (), ca: Identity | None = None) -> Identity:
        """A client identity (CN = user, O = groups), signed by `ca` (this PKI's CA by default)."""
        return issue_client(ca or self.ca, user, groups)

    def client_context(
        self, identity: Identity | None = None, *, maximum: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        """A client context that verifies the server against this CA and presents `identity` if given;
        `maximum` caps the TLS version it offers."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if maximum is not None:
            with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: that is what such a client tests
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.maximum_version = maximum
                if maximum < ssl.TLSVersion.TLSv1_2:  # let the client offer old versions: the server must refuse
                    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        if identity is not None:
            path = self.dir / f"client-{identity.cert.serial_number}.pem"
            path.write_bytes(identity.cert_pem() + identity.key_pem())
            ctx.load_cert_chain(path)
        return ctx
