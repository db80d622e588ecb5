"""x509 client certificates: a certificate directly issued by a CA of `--client-ca-file` is the user named by
its CN, in the groups named by its O attributes (k8s.io/apiserver `pkg/authentication/request/x509`,
`CommonNameUserConversion`).

A certificate with no CN names nobody (the request goes on to the other authenticators, as in Kubernetes); one
not issued by these CAs (a front-proxy certificate, whose CA the TLS layer also trusts), or not meant for
client authentication, is refused. The verdict on a certificate is cached by its DER bytes: a connection
hands the same bytes object to each of its requests, so a request costs one dict lookup.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from kos.api.errors import Unauthorized
from kos.apiserver.auth.authn import certs
from kos.apiserver.auth.authn.cache import remember
from kos.apiserver.auth.user import UserInfo, authenticated
from kos.http.messages import Request
from kos.pki.authority import user_of

CACHE_SIZE = 4096
"""Certificates remembered; past it the oldest verdict is dropped (and recomputed if seen again)."""

_NOBODY = ""
"""The cached verdict on a certificate without a CN: it names no user."""


class X509Authenticator:
    """Users from client certificates issued by `cas` (see the module docstring)."""

    __slots__ = ("_cas", "_verdicts")

    def __init__(self, cas: Sequence[x509.Certificate]) -> None:
        self._cas = tuple(cas)
        self._verdicts: dict[bytes, UserInfo | str] = {}
        """DER → the user, `_NOBODY`, or why the certificate is refused."""

    async def authenticate(self, request: Request) -> UserInfo | None:
        """The certificate's user; None without a certificate or a CN. Raises `Unauthorized` for a certificate
        these CAs did not issue."""
        der = request.peer_cert
        if der is None:
            return None
        verdict = self._verdicts.get(der)
        if verdict is None:
            verdict = remember(self._verdicts, der, self.judge(der), CACHE_SIZE)
        if isinstance(verdict, UserInfo):
            return verdict
        if verdict == _NOBODY:
            return None
        raise Unauthorized(f"Unauthorized: {verdict}")

    def judge(self, der: bytes) -> UserInfo | str:
        """The user a certificate (DER) names, `""` if it names none, or why it is refused."""
        cert = certs.parse(der)
        if cert is None:
            return "the client certificate cannot be parsed"
        if not certs.issued_by_any(cert, self._cas):
            return "the client certificate is not issued by a client CA (--client-ca-file)"
        if not certs.client_usage(cert):
            return "the client certificate is not for client authentication (extended key usage)"
        name, groups = user_of(cert)
        return authenticated(name, "", groups) if name else _NOBODY
