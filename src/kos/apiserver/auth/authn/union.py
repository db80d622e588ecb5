"""Kubernetes' union of authenticators (k8s.io/apiserver `pkg/authentication/request/union`): ask each in
order; the first that names a user wins; a refusal (`Unauthorized`) is remembered and the next is asked; if
none names a user, the first refusal is raised (401, even on the anonymous paths: kube-apiserver's anonymous
authenticator is joined with `NewFailOnError`), else None (no credentials: anonymous).
"""

from __future__ import annotations

from collections.abc import Sequence

from kos.api.errors import Unauthorized
from kos.apiserver.auth.gate import Authenticator
from kos.apiserver.auth.user import UserInfo
from kos.http.messages import Request


class UnionAuthenticator:
    """`authenticators` asked in order (see the module docstring); `aclose` closes those that hold resources."""

    __slots__ = ("authenticators",)

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self.authenticators = tuple(authenticators)

    async def authenticate(self, request: Request) -> UserInfo | None:
        refused: Unauthorized | None = None
        for a in self.authenticators:
            try:
                user = await a.authenticate(request)
            except Unauthorized as e:
                if refused is None:
                    refused = e
                continue
            if user is not None:
                return user
        if refused is not None:
            raise refused
        return None

    async def aclose(self) -> None:
        """Close every authenticator (and token source) that has an `aclose` (a webhook's HTTP session)."""
        for a in self.authenticators:
            for part in (a, *getattr(a, "tokens", ())):
                close = getattr(part, "aclose", None)
                if close is not None:
                    await close()
