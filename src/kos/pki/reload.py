"""A client certificate and key read from files, loaded again into the TLS context when the files change.

client-go reloads a kubeconfig's `client-certificate`/`client-key` files (`k8s.io/client-go/transport`,
`cert_rotation.go`) so that a certificate rotated on disk (kubelet's, cert-manager's) is used without a
restart. Here the check is made before each new connection — the only moment a client certificate is
presented — and costs two `stat` calls; pooled connections are few and long-lived, so that is rare. A
change loads both files into the same `ssl.SSLContext` (new handshakes present the new pair; open
connections keep theirs). A pair that does not load (caught half-written, a key that does not match) is
logged and skipped: the previous pair stays in use and the next connection tries again.

OpenSSL replaces a context's certificate before it checks the key against it, so a bad pair loaded straight
into the live context would leave it broken: the pair is read once, tried on a scratch context, and only
then loaded into the live one — from the same bytes, through a private temporary file (`load_pem_pair`:
Python loads certificates from files only).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from kos.util.log import get_logger

log = get_logger(__name__)

__all__ = ["ClientCertificateFiles", "load_pem_pair"]

_Stamp = tuple[int, int, int]


class ClientCertificateFiles:
    """`cert` and `key` (PEM files) as loaded into `ctx`; call it before connecting (see the module docstring)."""

    __slots__ = ("cert", "ctx", "key", "loaded", "reloads")

    def __init__(self, ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
        self.ctx, self.cert, self.key = ctx, cert, key
        self.loaded = self._stamp()
        """The files' (inode, mtime ns, size) when last loaded (what `ssl_context` loaded at start)."""
        self.reloads = 0

    def _stamp(self) -> tuple[_Stamp, _Stamp] | None:
        try:
            a, b = os.stat(self.cert), os.stat(self.key)
        except OSError:
            return None
        return (a.st_ino, a.st_mtime_ns, a.st_size), (b.st_ino, b.st_mtime_ns, b.st_size)

    def __call__(self) -> None:
        """Load the pair again if either file changed since it was last loaded; never raises."""
        stamp = self._stamp()
        if stamp is None or stamp == self.loaded:
            return
        try:
            cert, key = self.cert.read_bytes(), self.key.read_bytes()
            load_pem_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert, key)  # a bad pair fails here
            load_pem_pair(self.ctx, cert, key)
        except (ssl.SSLError, OSError) as e:
            log.warning("the client certificate files changed but do not load; keeping the previous pair",
                        cert=str(self.cert), key=str(self.key), error=str(e))  # fmt: skip
            return
        self.loaded = stamp
        self.reloads += 1
        log.info("client certificate reloaded", cert=str(self.cert))


def load_pem_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a certificate (chain) and its key, PEM bytes, into `ctx`, through a temporary file that only this
    user can read (mode 0600, `mkstemp`) and that is removed at once. Raises ssl.SSLError (a bad or mismatched
    pair: `ctx` may then hold the new certificate without a usable key) or OSError."""
    fd, name = tempfile.mkstemp(prefix="kos-client-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        ctx.load_cert_chain(name)
    finally:
        os.unlink(name)
