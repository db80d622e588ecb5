"""A small fake of a Kubernetes API's delegated-auth endpoints, for tests of `--authentication-kubeconfig`.

`FakeKubeAuth` is an in-process aiohttp server (TLS when given a context) with a route table: it answers
`POST /apis/authentication.k8s.io/v1/tokenreviews` from `tokens` (token → `UserInfo`; any other token is
answered `authenticated: false`) and counts the reviews (`token_reviews`) so tests see a cache work. More
endpoints (SubjectAccessReview) are added with `route(method, path, handler)`. With `require` set, a request
without `Authorization: Bearer <require>` is 401, as a real API would answer a server with bad credentials;
`fail` makes every review 500.

Also `RecordingAuthorizer`: an authorizer that allows everything and records who asked (`users`), so a test
sees which user a request was served as; and `DenialRecorder`, which records what another authorizer refuses.
"""

from __future__ import annotations

import json
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.gate import Authorizer, Decision
from kos.apiserver.auth.user import UserInfo

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""A route's answer to a JSON body: the JSON object to reply with (status 201)."""


class FakeKubeAuth:
    """See the module docstring. `async with FakeKubeAuth(...) as fake:` serves on 127.0.0.1 (`fake.url`)."""

    def __init__(self, *, ssl: _ssl.SSLContext | None = None, require: str | None = None) -> None:
        self.ssl = ssl
        self.require = require
        self.tokens: dict[str, UserInfo] = {}
        self.token_reviews = 0
        self.fail = False
        self.requests: list[tuple[str, dict[str, Any]]] = []
        """Every request that passed the credential check: (path, body)."""
        self.routes: dict[tuple[str, str], Handler] = {}
        self.route("POST", TOKEN_REVIEWS, self._token_review)
        self._runner: web.BaseRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl is not None else 'http'}://127.0.0.1:{self.port}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Answer `method path` with `handler` (replacing what answered it)."""
        self.routes[(method, path)] = handler

    async def start(self) -> None:
        server = web.Server(self._serve)
        runner = self._runner = web.ServerRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeKubeAuth:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        if self.require is not None and request.headers.get("Authorization") != f"Bearer {self.require}":
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        body = json.loads(await request.read() or b"{}")
        self.requests.append((request.path, body))
        return web.json_response(await handler(body), status=201)

    async def _token_review(self, body: dict[str, Any]) -> dict[str, Any]:
        self.token_reviews += 1
        if self.fail:
            raise web.HTTPInternalServerError()
        user = self.tokens.get(body.get("spec", {}).get("token", ""))
        status: dict[str, Any] = {"authenticated": user is not None}
        if user is not None:
            status["user"] = {"username": user.name, "uid": user.uid, "groups": list(user.groups),
                              "extra": {k: list(v) for k, v in user.extra.items()}}  # fmt: skip
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": body.get("spec", {}),
                "status": status}  # fmt: skip


class RecordingAuthorizer:
    """Allows every request and records `attrs.user` of each in `users` (for tests: who was it served as)."""

    def __init__(self) -> None:
        self.users: list[UserInfo] = []
        self.attributes: list[Attributes] = []

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        self.users.append(attrs.user)
        self.attributes.append(attrs)
        return Decision.ALLOW, ""


class DenialRecorder:
    """Wraps an authorizer (`inner`: the built-in policy, say) and records every request it does not allow in
    `denied`, so a test can assert that real components did their work with nothing refused."""

    def __init__(self, inner: Authorizer) -> None:
        self.inner = inner
        self.denied: list[Attributes] = []

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        decision, reason = await self.inner.authorize(attrs)
        if decision is not Decision.ALLOW:
            self.denied.append(attrs)
        return decision, reason
