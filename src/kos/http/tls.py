"""The server side of TLS: the listening context, built from files, and rebuilt when they change.

`server_context` builds what kube-apiserver serves with (`--tls-cert-file`, `--tls-private-key-file`, TLS 1.2
or newer; k8s.io/apiserver `pkg/server/options/serving.go`). When client CA bundles are given
(`--client-ca-file`, `--requestheader-client-ca-file`) the server asks every client for a certificate and
verifies one that is presented against all of them, but lets a client without one in (`CERT_OPTIONAL`, Go's
`VerifyClientCertIfGiven`): bearer tokens and anonymous health probes need no certificate.

Rotation without restart (`ReloadingContext`), as k8s.io/apiserver's `DynamicServingCertificateController`
and `DynamicFileCAContent`: the files are polled (each file's mtime, size and inode, on the injected clock,
once a second by default) and when any changes a new context is built; each NEW connection is handed the
newest one by `sni_callback` (OpenSSL calls it for every ClientHello, with or without SNI) swapping
`ssl_object.context`; connections already open keep theirs. New files that do not load (half written, a key
that does not match the certificate) leave the old context serving; the error is logged once, and the
next change is tried again.

What the swap changes: OpenSSL's `SSL_set_SSL_CTX` replaces the certificate and key, and certificate
verification reads the trust store of the connection's current `SSL_CTX`, so a rotated client CA bundle
takes effect for new connections too (tests/unit/test_tls_reload.py checks both). It does not change the
verify mode, which is the listening context's: the set of CA files is fixed by the flags, so whether a
certificate is asked for never changes.

A limit of Python's `ssl` (no verify callback; `SSLSocket.get_verified_chain` only from Python 3.13): a
client certificate that does not chain to one of the client CAs fails the handshake itself — OpenSSL
answers it with the alert `unknown_ca` — instead of reaching the HTTP layer to be answered 401 as
kube-apiserver answers it. asyncio's and uvloop's SSL transports then close the connection without
flushing that alert, so the client sees the connection closed (an end of stream or a reset) during or,
with TLS 1.3, just after its handshake; a client offering only TLS 1.1 or older sees the same. Nor does
the handshake say which of the CAs verified a certificate: authentication checks issuance again (with
`cryptography`) to tell a client certificate from a front proxy's.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kos.util.clock import REAL_CLOCK, Clock, Timer
from kos.util.log import get_logger

log = get_logger(__name__)

POLL_INTERVAL = 1.0
"""Seconds between looks at the certificate, key and CA files (kube-apiserver's file watchers re-read each
minute at most; a second costs a few `stat` calls)."""

Signature = tuple[tuple[int, int, int] | None, ...]
"""Each file's (mtime_ns, size, inode), or None when it cannot be read, in `ServingFiles.paths()` order."""


@dataclasses.dataclass(frozen=True, slots=True)
class ServingFiles:
    """What a TLS listener is built from: a PEM certificate chain, its PEM private key, and the PEM CA bundles
    client certificates are verified against (none: no client certificates are asked for)."""

    cert: Path
    key: Path
    client_cas: tuple[Path, ...] = ()

    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key, *self.client_cas)


class TLSFilesError(ValueError):
    """The TLS files do not make a context; the message says which file and why (never its contents)."""


def server_context(files: ServingFiles) -> ssl.SSLContext:
    """A server context for `files`: TLS 1.2 or newer, the certificate and key, and (if any CA is given)
    client certificates asked for and verified when presented (`CERT_OPTIONAL`).

    Raises `OSError` (a file cannot be read) or `TLSFilesError` (a file is not PEM of its kind, the key does
    not match the certificate or has a passphrase, a CA bundle holds no certificate).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    def no_passphrase() -> bytes:  # without it OpenSSL would prompt on the terminal for one
        raise TLSFilesError(f"{files.key}: the private key has a passphrase; kos reads keys without one")

    try:
        ctx.load_cert_chain(files.cert, files.key, password=no_passphrase)
    except ssl.SSLError as e:
        raise TLSFilesError(_why_not(files, e)) from None
    for ca in files.client_cas:
        try:
            ctx.load_verify_locations(cafile=ca)
        except ssl.SSLError:
            raise TLSFilesError(f"{ca}: holds no PEM certificate") from None
    if files.client_cas:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def _why_not(files: ServingFiles, e: ssl.SSLError) -> str:
    """Which of the certificate and key OpenSSL refused, and why (its own message names neither)."""
    try:
        cert = x509.load_pem_x509_certificates(files.cert.read_bytes())[0]
    except ValueError:
        return f"{files.cert}: not a PEM certificate"
    try:
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (ValueError, TypeError):
        return f"{files.key}: not a PEM private key"
    if key.public_key() != cert.public_key():
        return f"{files.key} is not the private key of the certificate in {files.cert}"
    return f"{files.cert}, {files.key}: {e.reason or e}"


def signature(paths: Sequence[Path]) -> Signature:
    """What identifies the files' contents cheaply: each one's (mtime_ns, size, inode), following symbolic
    links (a Kubernetes secret volume swaps a `..data` link), or None if it cannot be read."""
    out: list[tuple[int, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class ReloadingContext:
    """A TLS server context that follows its files: listen with `context`; new connections get `current`.

    Built at once from `files` (raising as `server_context` does when they are bad); `start()` polls them
    every `interval` seconds of `clock` until `stop()`, and `check()` polls once. `reloads` counts contexts
    built after the first, `failures` the changes that did not load.
    """

    def __init__(self, files: ServingFiles, *, clock: Clock = REAL_CLOCK, interval: float = POLL_INTERVAL) -> None:
        self.files = files
        self.clock = clock
        self.interval = interval
        self._seen = signature(files.paths())
        self.context = self._build()
        """The context to listen with (the first built); its `sni_callback` hands connections `current`."""
        self.context.sni_callback = self._hand_out
        self.current = self.context
        self.reloads = 0
        self.failures = 0
        self.on_reload: list[Callable[[], None]] = []
        """Called after each successful reload (the authenticators re-read their CA bundles)."""
        self._timer: Timer | None = None

    def _build(self) -> ssl.SSLContext:
        return server_context(self.files)

    def _hand_out(self, conn: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
        current = self.current
        if current is not self.context:
            conn.context = current

    def check(self) -> bool:
        """Look at the files once; build and hand out a new context if they changed and load. Whether the
        context was replaced. A change that does not load is logged once and tried again at the next change."""
        seen = signature(self.files.paths())
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            fresh = self._build()
        except (OSError, ValueError) as e:
            self.failures += 1
            log.error("the new TLS files do not load; serving the previous ones until they change again",
                      files=",".join(str(p) for p in self.files.paths()), error=str(e))  # fmt: skip
            return False
        self.current = fresh
        self.reloads += 1
        log.info("TLS certificate files reloaded", cert=str(self.files.cert))
        for listener in self.on_reload:
            try:
                listener()
            except (OSError, ValueError) as e:  # the context loaded the same files a moment ago: a race
                log.error("a listener of the TLS reload failed", error=str(e))
        return True

    def start(self) -> None:
        """Poll every `interval` seconds (on the running loop, through `clock`) until `stop()`."""
        if self._timer is None:
            self._timer = self.clock.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.check()
        finally:
            self._timer = self.clock.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
