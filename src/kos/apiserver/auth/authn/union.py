"""Kubernetes' union of authenticators (k8s.io/apiserver `pkg/authentication/request/union`): ask each in
order; the first that names a user wins; a refusal (`Unauthorized`) is remembered and the next is asked; if
none names a user, the first refusal is raised (401, even on the anonymous paths: kube-apiserver's anonymous
authenticator is joined with `NewFailOnError`), else None (no credentials: anonymous).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kos.api.errors import Unauthorized
from kos.apiserver.auth.authn.bearer import INVALID_TOKEN, BearerAuthenticator, bearer_token
from kos.apiserver.auth.authn.tokenfile import TokenFile
from kos.apiserver.auth.gate import NO_CREDENTIALS, Authenticator
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

    def refusal_before_body(self, headers: Mapping[bytes, bytes], peer_cert: bytes | None) -> str | None:
        """The 401 message a request with these headers is certain to get, known from its head alone, or None.

        Certain only without a client certificate (the front proxy's and x509's credential): then a request with
        no bearer token has no credentials (`NO_CREDENTIALS`), and one whose token every token source is a token
        file that does not hold it is refused (`INVALID_TOKEN`). A token a TokenReview may know is not judged
        here. The HTTP layer asks before reading a body, so an unauthenticated client cannot make the server
        hold request bodies (Kubernetes authenticates before a handler reads the body, too).
        """
        if peer_cert is not None:
            return None
        bearer = next((a for a in self.authenticators if isinstance(a, BearerAuthenticator)), None)
        auth = headers.get(b"authorization")
        token = bearer_token(auth) if bearer is not None and auth is not None else None
        if bearer is None or token is None:
            return NO_CREDENTIALS
        files = [t for t in bearer.tokens if isinstance(t, TokenFile)]
        if len(files) == len(bearer.tokens) and not any(f.knows(token) for f in files):
            return INVALID_TOKEN
        return None

    async def aclose(self) -> None:
        """Close every authenticator (and token source) that has an `aclose` (a webhook's HTTP session)."""
        for a in self.authenticators:
            for part in (a, *getattr(a, "tokens", ())):
                close = getattr(part, "aclose", None)
                if close is not None:
                    await close()
