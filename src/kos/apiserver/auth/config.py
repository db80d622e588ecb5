"""What the apiserver's authentication and authorization are configured with (`kos apiserver` flags).

The flag names and defaults are kube-apiserver's and k8s.io/apiserver's (`--client-ca-file`,
`--token-auth-file`, `--requestheader-*`, `--authentication-kubeconfig`, `--authorization-kubeconfig`, the
webhook cache TTLs of 10 s); `--users-group` is kos' (the group whose members get the user role).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kos.apiserver.auth.authn.bearer import BearerAuthenticator, TokenAuthenticator
from kos.apiserver.auth.authn.certs import load_cas
from kos.apiserver.auth.authn.requestheader import RequestHeaderAuthenticator
from kos.apiserver.auth.authn.tokenfile import TokenFile
from kos.apiserver.auth.authn.union import UnionAuthenticator
from kos.apiserver.auth.authn.webhook import TokenReviewAuthenticator, WebhookEndpoint
from kos.apiserver.auth.authn.x509 import X509Authenticator
from kos.apiserver.auth.gate import Admission, Authenticator, Authorizer, Gate
from kos.util.clock import REAL_CLOCK, Clock


@dataclasses.dataclass(frozen=True, slots=True)
class AuthSettings:
    """Paths are None when not configured; header names as given (matched case-insensitively)."""

    client_ca_file: Path | None = None
    """CA bundle (PEM) for x509 client certificates: CN = user, O = groups."""
    token_auth_file: Path | None = None
    """Static bearer tokens, Kubernetes' CSV: `token,user,uid,"group1,group2"`."""
    requestheader_client_ca_file: Path | None = None
    """CA bundle (PEM) of the front proxy (the aggregator's `--proxy-client-cert-file`)."""
    requestheader_allowed_names: tuple[str, ...] = ()
    """Common names a front-proxy certificate may have; empty: any name."""
    requestheader_username_headers: tuple[str, ...] = ("X-Remote-User",)
    requestheader_group_headers: tuple[str, ...] = ("X-Remote-Group",)
    requestheader_extra_headers_prefix: tuple[str, ...] = ("X-Remote-Extra-",)
    authentication_kubeconfig: Path | None = None
    """Kubeconfig of a Kubernetes API to send TokenReviews to (bearer tokens the token file does not know)."""
    authentication_token_webhook_cache_ttl: float = 10.0
    authorization_kubeconfig: Path | None = None
    """Kubeconfig of a Kubernetes API to send SubjectAccessReviews to (after the built-in policy)."""
    authorization_webhook_cache_authorized_ttl: float = 10.0
    authorization_webhook_cache_unauthorized_ttl: float = 10.0
    users_group: str = "kos:users"
    """Members of this group may create and change Subnets and NetworkAttachments and read IPLocks."""

    def client_ca_files(self) -> list[Path]:
        """Every CA a client certificate may chain to (the TLS layer asks for certificates from these)."""
        return [p for p in (self.client_ca_file, self.requestheader_client_ca_file) if p is not None]


def build_authenticator(s: AuthSettings, *, token_review: TokenAuthenticator | None = None) -> UnionAuthenticator:
    """The authenticator union of the settings, in kube-apiserver's order: front proxy (if
    `requestheader_client_ca_file`), x509 (if `client_ca_file`), bearer tokens (the token file, then
    `token_review`, if either). Reads the files now: raises ValueError (`TokenFileError` included) naming a
    malformed one, OSError for an unreadable one."""
    parts: list[Authenticator] = []
    if s.requestheader_client_ca_file is not None:
        parts.append(RequestHeaderAuthenticator(
            load_cas(s.requestheader_client_ca_file), s.requestheader_allowed_names,
            s.requestheader_username_headers, s.requestheader_group_headers,
            s.requestheader_extra_headers_prefix))  # fmt: skip
    if s.client_ca_file is not None:
        parts.append(X509Authenticator(load_cas(s.client_ca_file)))
    tokens: list[TokenAuthenticator] = []
    if s.token_auth_file is not None:
        tokens.append(TokenFile.load(s.token_auth_file))
    if token_review is not None:
        tokens.append(token_review)
    if tokens:
        parts.append(BearerAuthenticator(tokens))
    return UnionAuthenticator(parts)


def build_gate(
    s: AuthSettings,
    clock: Clock = REAL_CLOCK,
    *,
    authorizer: Authorizer | None = None,
    admission: Admission | None = None,
    token_review: WebhookEndpoint | None = None,
) -> Gate:
    """The secure gate of a server with these settings: `build_authenticator(s, token_review=...)`, then
    `authorizer` (None: every authenticated request is allowed) and `admission`. With no credentials
    configured every request is anonymous (only the health paths and /version answer). `token_review`: where
    bearer tokens the token file does not hold are reviewed (`--authentication-kubeconfig`'s server, TLS and
    credentials), answers cached `s.authentication_token_webhook_cache_ttl` seconds on `clock`.
    Raises as `build_authenticator`. `await gate.aclose()` when the server stops."""
    review = None
    if token_review is not None:
        review = TokenReviewAuthenticator(token_review, clock=clock, ttl=s.authentication_token_webhook_cache_ttl)
    return Gate(build_authenticator(s, token_review=review), authorizer, admission)


def reload_client_cas(gate: Gate, s: AuthSettings) -> None:
    """Give the gate's certificate authenticators the CA bundles now in `s`'s files (they changed on disk and
    the TLS layer already trusts them). Raises ValueError or OSError as `load_cas`."""
    union = gate.authenticator
    if not isinstance(union, UnionAuthenticator):
        return
    for a in union.authenticators:
        if isinstance(a, RequestHeaderAuthenticator) and s.requestheader_client_ca_file is not None:
            a.set_cas(load_cas(s.requestheader_client_ca_file))
        elif isinstance(a, X509Authenticator) and s.client_ca_file is not None:
            a.set_cas(load_cas(s.client_ca_file))
