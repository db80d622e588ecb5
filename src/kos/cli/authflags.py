"""The apiserver's authentication and authorization flags (kube-apiserver's names) → `AuthSettings`."""

from __future__ import annotations

import argparse

from kos.apiserver.auth.config import AuthSettings
from kos.cli.settings import existing_file, positive


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list (empty items dropped), as Kubernetes' string-slice flags."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _optional_file(value: str) -> object:
    return existing_file(value) if value else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = AuthSettings()
    p.add_argument("--client-ca-file", type=_optional_file, default=None,
                   help="CA bundle (PEM) for client certificates: CN is the user, O the groups")  # fmt: skip
    p.add_argument("--token-auth-file", type=_optional_file, default=None,
                   help='bearer tokens, one per line: token,user,uid,"group1,group2" (Kubernetes\' CSV)')  # fmt: skip
    p.add_argument("--requestheader-client-ca-file", type=_optional_file, default=None,
                   help="CA bundle (PEM) of the front proxy (kube-apiserver's --proxy-client-cert-file) "
                        "whose X-Remote-* headers are trusted")  # fmt: skip
    p.add_argument("--requestheader-allowed-names", type=_names, default=(),
                   help="common names a front-proxy certificate may have (comma-separated; empty: any)")  # fmt: skip
    p.add_argument("--requestheader-username-headers", type=_names, default=d.requestheader_username_headers,
                   help="headers the front proxy names the user in")  # fmt: skip
    p.add_argument("--requestheader-group-headers", type=_names, default=d.requestheader_group_headers,
                   help="headers the front proxy names groups in")  # fmt: skip
    p.add_argument("--requestheader-extra-headers-prefix", type=_names,
                   default=d.requestheader_extra_headers_prefix,
                   help="header prefixes the front proxy sends extra user values in")  # fmt: skip
    p.add_argument("--authentication-kubeconfig", type=_optional_file, default=None,
                   help="kubeconfig of a Kubernetes API that reviews bearer tokens (TokenReview)")  # fmt: skip
    p.add_argument("--authentication-token-webhook-cache-ttl", type=positive,
                   default=d.authentication_token_webhook_cache_ttl, help="seconds a TokenReview answer is kept")  # fmt: skip
    p.add_argument("--authorization-kubeconfig", type=_optional_file, default=None,
                   help="kubeconfig of a Kubernetes API that authorizes what the built-in policy does not "
                        "(SubjectAccessReview)")  # fmt: skip
    p.add_argument("--authorization-webhook-cache-authorized-ttl", type=positive,
                   default=d.authorization_webhook_cache_authorized_ttl, help="seconds an allow is kept")  # fmt: skip
    p.add_argument("--authorization-webhook-cache-unauthorized-ttl", type=positive,
                   default=d.authorization_webhook_cache_unauthorized_ttl, help="seconds a denial is kept")  # fmt: skip
    p.add_argument("--users-group", default=d.users_group,
                   help="group whose members may manage Subnets and NetworkAttachments and read IPLocks")  # fmt: skip


def settings_from(args: argparse.Namespace) -> AuthSettings:
    return AuthSettings(
        client_ca_file=args.client_ca_file,
        token_auth_file=args.token_auth_file,
        requestheader_client_ca_file=args.requestheader_client_ca_file,
        requestheader_allowed_names=args.requestheader_allowed_names,
        requestheader_username_headers=args.requestheader_username_headers,
        requestheader_group_headers=args.requestheader_group_headers,
        requestheader_extra_headers_prefix=args.requestheader_extra_headers_prefix,
        authentication_kubeconfig=args.authentication_kubeconfig,
        authentication_token_webhook_cache_ttl=args.authentication_token_webhook_cache_ttl,
        authorization_kubeconfig=args.authorization_kubeconfig,
        authorization_webhook_cache_authorized_ttl=args.authorization_webhook_cache_authorized_ttl,
        authorization_webhook_cache_unauthorized_ttl=args.authorization_webhook_cache_unauthorized_ttl,
        users_group=args.users_group,
    )
