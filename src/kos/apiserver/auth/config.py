"""What the apiserver's authentication and authorization are configured with (`kos apiserver` flags).

The flag names and defaults are kube-apiserver's and k8s.io/apiserver's (`--client-ca-file`,
`--token-auth-file`, `--requestheader-*`, `--authentication-kubeconfig`, `--authorization-kubeconfig`, the
webhook cache TTLs of 10 s); `--users-group` is kos' (the group whose members get the user role).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kos.apiserver.auth.gate import Gate
from kos.util.clock import Clock


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


def build_gate(s: AuthSettings, clock: Clock) -> Gate:
    """The gate a secure server runs with."""
    return Gate(None, None)  # placeholder until i12-authn merges
