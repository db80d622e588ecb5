"""The front proxy: whose `X-Remote-*` headers are believed (k8s.io/apiserver
`pkg/authentication/request/headerrequest/requestheader.go`, behind `x509.NewVerifier`).

Only a request whose client certificate was directly issued by a CA of `--requestheader-client-ca-file`, with
a CN in `--requestheader-allowed-names` (any CN if that is empty), is a front proxy's. Its user is the first
non-empty username header (`X-Remote-User`); its groups every non-empty value of every group header
(`X-Remote-Group`, each line one group, not comma-split); its extras every header starting with an extra
prefix (`X-Remote-Extra-`), the rest of the name lower-cased and percent-decoded as the key, every line a
value. A front-proxy certificate with a CN not allowed is refused (401 unless another authenticator names a
user); one without a username header names nobody here. Anyone else's `X-Remote-*` headers are ignored.

The verdict on a certificate is cached by its DER bytes (its validity period is checked per request, as the
x509 authenticator's); the headers are read per request (they differ).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import unquote

from cryptography import x509

from kos.api.errors import Unauthorized
from kos.apiserver.auth.authn import certs
from kos.apiserver.auth.authn.cache import remember
from kos.apiserver.auth.user import UserInfo, authenticated
from kos.http.messages import Request

CACHE_SIZE = 1024

_PROXY = ""
"""The cached verdict on an allowed front-proxy certificate (anything else cached is a refusal or `_OTHER`)."""
_OTHER = "-"
"""The cached verdict on a certificate the front-proxy CAs did not issue: not a proxy, nothing to say."""


def _lower(names: Iterable[str]) -> tuple[bytes, ...]:
    return tuple(n.strip().lower().encode("latin-1") for n in names if n.strip())


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class RequestHeaderAuthenticator:
    """Users a front proxy names in headers (see the module docstring). Header names match case-insensitively."""

    __slots__ = ("_allowed", "_cas", "_extra_prefixes", "_group_headers", "_user_headers", "_verdicts", "_wall")

    def __init__(
        self,
        cas: Sequence[x509.Certificate],
        allowed_names: Iterable[str] = (),
        username_headers: Iterable[str] = ("X-Remote-User",),
        group_headers: Iterable[str] = ("X-Remote-Group",),
        extra_headers_prefixes: Iterable[str] = ("X-Remote-Extra-",),
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._cas = tuple(cas)
        self._allowed = frozenset(allowed_names)
        self._user_headers = _lower(username_headers)
        self._group_headers = _lower(group_headers)
        self._extra_prefixes = _lower(extra_headers_prefixes)
        self._wall = wall
        self._verdicts: dict[bytes, tuple[str, float, float]] = {}
        """DER → (`_PROXY`, `_OTHER` or a refusal; the certificate's validity period in POSIX seconds)."""

    def set_cas(self, cas: Sequence[x509.Certificate]) -> None:
        """Replace the CA bundle (its file changed) and forget every verdict."""
        self._cas = tuple(cas)
        self._verdicts.clear()

    async def authenticate(self, request: Request) -> UserInfo | None:
        """The user the front proxy names; None when the request is not a front proxy's or names no user.
        Raises `Unauthorized` for a front-proxy certificate whose CN is not allowed."""
        der = request.peer_cert
        if der is None:
            return None
        cached = self._verdicts.get(der)
        if cached is None:
            cached = remember(self._verdicts, der, self.judge(der), CACHE_SIZE)
        verdict, start, end = cached
        if verdict == _OTHER:
            return None
        if verdict != _PROXY:
            raise Unauthorized(f"Unauthorized: {verdict}")
        if not start <= self._wall() <= end:
            raise Unauthorized("Unauthorized: the front-proxy certificate has expired or is not yet valid")
        return self.named_user(request)

    def judge(self, der: bytes) -> tuple[str, float, float]:
        """(`_PROXY` for an allowed front-proxy certificate, `_OTHER` for one the front-proxy CAs did not issue,
        or why a front-proxy certificate is refused; its validity period)."""
        cert = certs.parse(der)
        if cert is None or not certs.issued_by_any(cert, self._cas):
            return _OTHER, 0.0, 0.0
        if not certs.client_usage(cert):
            return "the front-proxy certificate is not for client authentication (extended key usage)", 0.0, 0.0
        cn = certs.common_name(cert)
        if self._allowed and cn not in self._allowed:
            return (f"the front-proxy certificate's common name {cn!r} is not in --requestheader-allowed-names",
                    0.0, 0.0)  # fmt: skip
        return _PROXY, *certs.validity(cert)

    def named_user(self, request: Request) -> UserInfo | None:
        """The user the headers name (first non-empty username header), or None."""
        headers = request.headers
        name = b""
        for h in self._user_headers:
            name = headers.get(h, b"")
            if name:
                break
        if not name:
            return None
        groups = [_text(v) for h in self._group_headers for v in request.header_values(h) if v]
        extra: dict[str, list[str]] = {}
        for prefix in self._extra_prefixes:  # prefixes first, so values keep their order (as Kubernetes)
            for h in headers:
                if h.startswith(prefix) and len(h) > len(prefix):
                    key = unquote(h[len(prefix) :].decode("latin-1"))
                    extra.setdefault(key, []).extend(_text(v) for v in request.header_values(h))
        return authenticated(_text(name), "", groups, {k: tuple(v) for k, v in extra.items()})
