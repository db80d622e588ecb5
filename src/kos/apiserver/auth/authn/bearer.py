"""Bearer tokens: `Authorization: Bearer <token>` asked of each token authenticator in turn
(k8s.io/apiserver `pkg/authentication/request/bearertoken`).

A request without such a header is not this authenticator's (None). A token no authenticator accepts is
refused (401): Kubernetes does not let an invalid token fall back to anonymous. Tokens are never logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kos.api.errors import Unauthorized
from kos.apiserver.auth.user import UserInfo
from kos.http.messages import Request

INVALID_TOKEN = "Unauthorized: invalid bearer token"


class TokenAuthenticator(Protocol):
    """One source of bearer tokens (the token file, a TokenReview webhook)."""

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The token's user, or None if this source does not accept it. Raises `Unauthorized` when it cannot
        tell (a webhook that failed)."""
        ...


def bearer_token(authorization: bytes) -> str | None:
    """The token of an `Authorization` value if its scheme is Bearer (any case) and the token is not empty and
    is UTF-8; else None. As Kubernetes: the value is trimmed and split on single spaces, the second part is the
    token."""
    parts = authorization.strip().split(b" ", 2)
    if len(parts) < 2 or parts[0].lower() != b"bearer" or not parts[1]:
        return None
    try:
        return parts[1].decode()
    except UnicodeDecodeError:
        return None


class BearerAuthenticator:
    """Users of bearer tokens, from `tokens` asked in order (see the module docstring)."""

    __slots__ = ("tokens",)

    def __init__(self, tokens: Sequence[TokenAuthenticator]) -> None:
        self.tokens = tuple(tokens)

    async def authenticate(self, request: Request) -> UserInfo | None:
        """The token's user; None without a bearer token. Raises `Unauthorized` for a token nobody accepts."""
        auth = request.headers.get(b"authorization")
        if auth is None:
            return None
        token = bearer_token(auth)
        if token is None:
            return None
        for source in self.tokens:
            user = await source.authenticate_token(token)
            if user is not None:
                return user
        raise Unauthorized(INVALID_TOKEN)
