"""The apiserver's authorizer and admission, from its settings (`kos apiserver` flags → `AuthSettings`).

The caller reads `--authorization-kubeconfig` (a kubeconfig reader lives with the clients) and passes where
it points as a `WebhookEndpoint` (`kos.apiserver.auth.authn.webhook`); the results go to the gate:
`build_gate(s, clock, authorizer=build_authorizer(s, clock, webhook=...), admission=build_admission())`.
"""

from __future__ import annotations

from kos.apiserver.auth.authn.webhook import WebhookEndpoint
from kos.apiserver.auth.authz.policy import BuiltinPolicy
from kos.apiserver.auth.authz.union import Union
from kos.apiserver.auth.authz.webhook import SubjectAccessReviewer
from kos.apiserver.auth.config import AuthSettings
from kos.apiserver.auth.gate import Admission
from kos.apiserver.auth.noderestriction import NodeRestriction
from kos.util.clock import REAL_CLOCK, Clock


def build_authorizer(
    s: AuthSettings, clock: Clock = REAL_CLOCK, *, webhook: WebhookEndpoint | None = None
) -> BuiltinPolicy | Union:
    """The built-in roles (`policy`, users' group `s.users_group`), then, if `webhook` is given, delegated
    SubjectAccessReview to it with `s`'s cache TTLs on `clock`: the union of the two, or the policy alone.
    Either has `aclose()` (`Gate.aclose` awaits it when the server stops: it ends the webhook's HTTP session)."""
    policy = BuiltinPolicy(s.users_group)
    if webhook is None:
        return policy
    sar = SubjectAccessReviewer(
        webhook, clock=clock, allowed_ttl=s.authorization_webhook_cache_authorized_ttl,
        denied_ttl=s.authorization_webhook_cache_unauthorized_ttl,
    )  # fmt: skip
    return Union([policy, sar])


def build_admission() -> Admission:
    """kos' admission of writes after authorization: the node restriction (`noderestriction.NodeRestriction`)."""
    return NodeRestriction()
