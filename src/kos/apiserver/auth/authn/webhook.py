"""Delegated TokenReview: a bearer token nobody here knows is asked of a Kubernetes API
(k8s.io/apiserver `plugin/pkg/authenticator/token/webhook`, behind `token/cache`), as an extension apiserver
does with `--authentication-kubeconfig`.

`POST <server>/apis/authentication.k8s.io/v1/tokenreviews` with `{"spec": {"token": ...}}`; an answer with
`status.authenticated` names the user (`status.user`: username, uid, groups, extra). Answers, yes and no, are
cached for `--authentication-token-webhook-cache-ttl` (10 s) on the injected clock, keyed by the token's
SHA-256 digest, at most `CACHE_SIZE` of them; concurrent requests with the same token share one review. A
review that fails (unreachable, timeout, an answer other than 200/201) is not cached and refuses the request
(401), as Kubernetes does. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl as _ssl
from collections.abc import Mapping

import aiohttp
import msgspec

from kos.api.errors import Unauthorized
from kos.apiserver.auth.authn.cache import remember
from kos.apiserver.auth.authn.tokenfile import digest
from kos.apiserver.auth.user import UserInfo, authenticated
from kos.util.clock import Clock
from kos.util.log import get_logger

log = get_logger(__name__)

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
TIMEOUT = 10.0
"""Seconds a review may take (Kubernetes' webhook default request timeout)."""
CACHE_SIZE = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """Where a Kubernetes API answers reviews: `server` (`https://host:port`, no trailing path), the
    `ssl` context verifying it (and presenting a client certificate; None: the system's defaults), and
    `headers` sent with each review (e.g. `Authorization: Bearer ...` from a kubeconfig), read at each review
    (a kubeconfig's `tokenFile` token changes as the file does: kos.pki.bearer)."""

    server: str
    ssl: _ssl.SSLContext | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


class _User(msgspec.Struct):
    username: str = ""
    uid: str = ""
    groups: list[str] = msgspec.field(default_factory=list)
    extra: dict[str, list[str]] = msgspec.field(default_factory=dict)


class _Status(msgspec.Struct):
    authenticated: bool = False
    user: _User = msgspec.field(default_factory=_User)
    error: str = ""


class _Review(msgspec.Struct):
    status: _Status = msgspec.field(default_factory=_Status)


_DECODER = msgspec.json.Decoder(_Review)


class TokenReviewAuthenticator:
    """Bearer tokens reviewed by `endpoint` (see the module docstring); `aclose()` closes its HTTP session."""

    def __init__(self, endpoint: WebhookEndpoint, *, clock: Clock, ttl: float = 10.0) -> None:
        self.endpoint = endpoint
        self._url = endpoint.server.rstrip("/") + TOKEN_REVIEWS
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._clock = clock
        self._ttl = ttl
        self._answers: dict[bytes, tuple[float, UserInfo | None]] = {}
        """digest → (monotonic expiry, the user or None for "not authenticated")."""
        self._pending: dict[bytes, asyncio.Task[UserInfo | None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The token's user per the review (cached), or None if the review says it is not authenticated.
        Raises `Unauthorized` if the review failed."""
        key = digest(token)
        hit = self._answers.get(key)
        if hit is not None and hit[0] > self._clock.monotonic():
            return hit[1]
        task = self._pending.get(key)
        if task is None:
            task = self._pending[key] = asyncio.ensure_future(self._review(key, token))
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task)  # a caller that goes away leaves the review to the others

    def _done(self, key: bytes, task: asyncio.Task[UserInfo | None]) -> None:
        self._pending.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    async def _review(self, key: bytes, token: str) -> UserInfo | None:
        body = msgspec.json.encode({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                    "spec": {"token": token}})  # fmt: skip
        try:
            async with self._client().post(self._url, data=body, headers={**self._headers, **self.endpoint.headers},
                                           ssl=self.endpoint.ssl or True) as resp:  # fmt: skip
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.warning("token review failed", server=self.endpoint.server, error=repr(e))
            raise Unauthorized("Unauthorized: the token review failed") from None
        if status not in (200, 201):
            log.warning("token review refused", server=self.endpoint.server, status=status)
            raise Unauthorized("Unauthorized: the token review failed")
        try:
            review = _DECODER.decode(data).status
        except msgspec.DecodeError as e:
            log.warning("token review answer malformed", server=self.endpoint.server, error=str(e))
            raise Unauthorized("Unauthorized: the token review failed") from None
        u = review.user
        user = None
        if review.authenticated and u.username:
            user = authenticated(u.username, u.uid, u.groups, {k: tuple(v) for k, v in u.extra.items()})
        remember(self._answers, key, (self._clock.monotonic() + self._ttl, user), CACHE_SIZE)
        return user

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
