"""x509 client certificates: a certificate directly issued by a CA of `--client-ca-file` is the user named by
its CN, in the groups named by its O attributes (k8s.io/apiserver `pkg/authentication/request/x509`,
`CommonNameUserConversion`).

A certificate with no CN names nobody (the request goes on to the other authenticators, as in Kubernetes); one
not issued by these CAs (a front-proxy certificate, whose CA the TLS layer also trusts), or not meant for
client authentication, is refused, as is one outside its validity period. The verdict on a certificate is
cached by its DER bytes: a connection hands the same bytes object to each of its requests, so a request costs
one dict lookup and a comparison of the time with the certificate's expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from cryptography import x509

from kos.api.errors import Unauthorized
from kos.apiserver.auth.authn import certs
from kos.apiserver.auth.authn.cache import remember
from kos.apiserver.auth.user import UserInfo, authenticated
from kos.http.messages import Request
from kos.pki.authority import user_of

CACHE_SIZE = 4096
"""Certificates remembered; past it the oldest verdict is dropped (and recomputed if seen again)."""

Verdict = tuple[UserInfo | None, str, float, float]
"""What a certificate means: its user (None: it names nobody), why it is refused ("" if it is not), and when it
is valid (POSIX seconds, from and until)."""


class X509Authenticator:
    """Users from client certificates issued by `cas` (see the module docstring)."""

    __slots__ = ("_cas", "_verdicts", "_wall")

    def __init__(self, cas: Sequence[x509.Certificate], *, wall: Callable[[], float] = time.time) -> None:
        self._cas = tuple(cas)
        self._wall = wall
        """The wall time in POSIX seconds (tests move it)."""
        self._verdicts: dict[bytes, Verdict] = {}

    def set_cas(self, cas: Sequence[x509.Certificate]) -> None:
        """Replace the CA bundle (its file changed) and forget every verdict."""
        self._cas = tuple(cas)
        self._verdicts.clear()

    async def authenticate(self, request: Request) -> UserInfo | None:
        """The certificate's user; None without a certificate or a CN. Raises `Unauthorized` for a certificate
        these CAs did not issue."""
        der = request.peer_cert
        if der is None:
            return None
        verdict = self._verdicts.get(der)
        if verdict is None:
            verdict = remember(self._verdicts, der, self.judge(der), CACHE_SIZE)
        user, refusal, start, end = verdict
        if refusal:
            raise Unauthorized(f"Unauthorized: {refusal}")
        if not start <= self._wall() <= end:
            raise Unauthorized("Unauthorized: the client certificate has expired or is not yet valid")
        return user

    def judge(self, der: bytes) -> Verdict:
        """What a certificate (DER) means (see `Verdict`)."""
        cert = certs.parse(der)
        if cert is None:
            return None, "the client certificate cannot be parsed", 0.0, 0.0
        if not certs.issued_by_any(cert, self._cas):
            return None, "the client certificate is not issued by a client CA (--client-ca-file)", 0.0, 0.0
        if not certs.client_usage(cert):
            return None, "the client certificate is not for client authentication (extended key usage)", 0.0, 0.0
        name, groups = user_of(cert)
        return (authenticated(name, "", groups) if name else None), "", *certs.validity(cert)
