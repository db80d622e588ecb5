"""The one object the apiserver's routes ask "who is this, and may they?" (see the package docstring).

`Gate.insecure()` is the `--insecure` server: every request is `UNSECURED` (in `system:masters`) and nothing
is judged, at the cost of one attribute test per request. A secure gate is assembled from the settings by
`kos.apiserver.auth.config`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

from kos.api.errors import Forbidden, Unauthorized
from kos.api.meta import StatusDetails
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.user import ANONYMOUS, UNSECURED, UserInfo
from kos.http.messages import Request

NO_CREDENTIALS = "Unauthorized: present a client certificate or a bearer token (see docs/security.md)"
"""The 401 of a request with no credentials outside `ANONYMOUS_PATHS`."""
ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
"""The only paths an unauthenticated request may reach (exact, not sub-paths, as Kubernetes' AlwaysAllowPaths)."""


class Decision(enum.Enum):
    """An authorizer's answer (k8s.io/apiserver `authorizer.Decision`): a union goes on past NO_OPINION only."""

    ALLOW = "allow"
    DENY = "deny"
    NO_OPINION = "no-opinion"


class Authenticator(Protocol):
    """One way of proving who one is."""

    async def authenticate(self, request: Request) -> UserInfo | None:
        """The request's user, or None when it carries no credentials of this kind.

        Raises `Unauthorized` when it carries such credentials and they are not valid (a union stops there,
        as Kubernetes' does for an invalid bearer token).
        """
        ...


class Authorizer(Protocol):
    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        """The decision on `attrs` and a reason (shown to a denied client; may be "")."""
        ...


Admit = Callable[[Any, Any], None]
"""Admission of one write: `admit(new, old)` (the API objects) returns, or raises `Forbidden` (or `Invalid`)."""


class Admission(Protocol):
    def for_write(self, attrs: Attributes) -> Admit | None:
        """The check a write described by `attrs` must pass with its old and new object, or None (no check)."""
        ...


class Gate:
    """Authenticate (`authenticate`), authorize (`authorize`) and find the admission check of a write
    (`admission`). With no authenticator the gate is insecure: see the module docstring."""

    __slots__ = ("admission_plugin", "authenticator", "authorizer", "secure")

    def __init__(
        self,
        authenticator: Authenticator | None,
        authorizer: Authorizer | None,
        admission: Admission | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.admission_plugin = admission
        self.secure = authenticator is not None

    @classmethod
    def insecure(cls) -> Gate:
        return cls(None, None, None)

    async def authenticate(self, request: Request) -> UserInfo:
        """The request's user. Raises `Unauthorized` (401) for bad credentials, and for a request with none
        outside `ANONYMOUS_PATHS`."""
        if self.authenticator is None:
            return UNSECURED
        user = await self.authenticator.authenticate(request)
        if user is not None:
            return user
        if request.path in ANONYMOUS_PATHS:
            return ANONYMOUS
        raise Unauthorized(NO_CREDENTIALS)

    async def authorize(self, attrs: Attributes) -> None:
        """Returns if `attrs` is allowed; raises `Forbidden` (403) naming the user, verb, resource and
        namespace otherwise (NO_OPINION from every authorizer is a denial)."""
        if self.authorizer is None:
            return
        decision, reason = await self.authorizer.authorize(attrs)
        if decision is not Decision.ALLOW:
            raise forbidden(attrs, reason)

    async def aclose(self) -> None:
        """Release what the parts hold (a webhook's HTTP sessions): each part's `aclose`, if it has one."""
        for part in (self.authenticator, self.authorizer, self.admission_plugin):
            close = getattr(part, "aclose", None)
            if close is not None:
                await close()

    def admission(self, attrs: Attributes) -> Admit | None:
        if self.admission_plugin is None:
            return None
        return self.admission_plugin.for_write(attrs)


def forbidden(attrs: Attributes, reason: str) -> Forbidden:
    """kube-apiserver's 403: `<resource>.<group> "<name>" is forbidden: User "u" cannot <verb> resource ...`."""
    if attrs.resource_request:
        what = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
        head = f'{what} "{attrs.name}" is forbidden' if attrs.name else f"{what} is forbidden"
    else:
        head = "forbidden"
    details = StatusDetails(name=attrs.name, group=attrs.api_group, kind=attrs.resource)  # as NewForbidden's
    return Forbidden(f"{head}: {attrs.describe()}" + (f": {reason}" if reason else ""), details=details)
