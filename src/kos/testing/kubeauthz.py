"""A small fake of Kubernetes' SubjectAccessReview endpoint, and a test-only header authenticator.

`FakeSubjectAccessReview` is a `kos.testing.kubeauth.FakeKubeAuth` (an in-process server, TLS when given a
context) that also answers
`POST /apis/authorization.k8s.io/v1/subjectaccessreviews` from `rules`: the first `SARRule` that matches the
review decides (`allowed: true`, or `denied: true`); none matching is neither (no opinion). It counts the
reviews (`reviews`) so tests see the caches work, keeps them (`bodies`), answers 500 while `fail` is set, and
with `require` set refuses (401) a request without `Authorization: Bearer <require>`. `review` is the route
handler alone (JSON body → JSON answer), for a fake Kubernetes API that serves other endpoints too
(`kos.testing.kubeauth.FakeKubeAuth.route`).

`HeaderAuthenticator` is an `Authenticator` for tests that do not need certificates: the user is read from a
request header through a function (`user_agent_identity` maps the User-Agent kos' own programs send: the
controller manager and `kos-agent/<node>`, so they run unchanged through a secure gate).
"""

from __future__ import annotations

import dataclasses
import ssl as _ssl
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from kos.api.errors import Unauthorized
from kos.apiserver.auth.user import AUTHENTICATED, CONTROLLER_MANAGER, NODE_USER_PREFIX, NODES_GROUP, UserInfo
from kos.http.messages import Request
from kos.testing.kubeauth import FakeKubeAuth

SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@dataclasses.dataclass(frozen=True)
class SARRule:
    """Decides a review (`allow` True: allowed, False: denied) when every field given (not None) matches:
    `user` (name), `group` (one of the groups), `verb`, `resource`, `subresource`, `namespace`, `path`
    (non-resource)."""

    allow: bool
    user: str | None = None
    group: str | None = None
    verb: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    path: str | None = None

    def matches(self, spec: Mapping[str, Any]) -> bool:
        attrs = spec.get("resourceAttributes") or spec.get("nonResourceAttributes") or {}
        checks = (
            (self.user, spec.get("user")), (self.verb, attrs.get("verb")), (self.resource, attrs.get("resource")),
            (self.subresource, attrs.get("subresource", "")), (self.namespace, attrs.get("namespace", "")),
            (self.path, attrs.get("path")),
        )  # fmt: skip
        if any(want is not None and want != got for want, got in checks):
            return False
        return self.group is None or self.group in (spec.get("groups") or ())


class FakeSubjectAccessReview(FakeKubeAuth):
    """See the module docstring: a `FakeKubeAuth` (its server, `require`, `fail`, `url`) that also answers
    SubjectAccessReviews. `async with FakeSubjectAccessReview(rules) as fake:` serves on 127.0.0.1."""

    def __init__(
        self, rules: list[SARRule] | None = None, *, ssl: _ssl.SSLContext | None = None, require: str | None = None
    ) -> None:
        super().__init__(ssl=ssl, require=require)
        self.rules = list(rules or [])
        self.reviews = 0
        self.bodies: list[dict[str, Any]] = []
        self.route("POST", SUBJECT_ACCESS_REVIEWS, self.review)

    async def review(self, body: dict[str, Any]) -> dict[str, Any]:
        """The answer to one SubjectAccessReview (`body`, decoded); counts it. Raises HTTPInternalServerError
        while `fail` is set."""
        self.reviews += 1
        self.bodies.append(body)
        if self.fail:
            raise web.HTTPInternalServerError()
        spec = body.get("spec") or {}
        status: dict[str, Any] = {"allowed": False}
        for rule in self.rules:
            if rule.matches(spec):
                status = {"allowed": True, "reason": "allowed by a test rule"} if rule.allow else {
                    "allowed": False, "denied": True, "reason": "denied by a test rule"}  # fmt: skip
                break
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec,
                "status": status}  # fmt: skip


class HeaderAuthenticator:
    """Test-only `Authenticator`: `users(value of header)` is the user (None: not authenticated; a request
    without the header carries no credentials). Never use outside tests: anyone can send a header."""

    def __init__(self, users: Callable[[str], UserInfo | None], header: bytes = b"x-test-user") -> None:
        self.users = users
        self.header = header

    async def authenticate(self, request: Request) -> UserInfo | None:
        value = request.header(self.header)
        if value is None:
            return None
        user = self.users(value)
        if user is None:
            raise Unauthorized(f"unknown test user {value!r}")
        return user


def user_agent_identity(others: Mapping[str, UserInfo] | None = None) -> Callable[[str], UserInfo | None]:
    """For `HeaderAuthenticator(..., header=b"user-agent")`: `kos-controller-manager` is the controller manager,
    `kos-agent/<node>` that node's agent, and any other User-Agent what `others` maps it to."""
    table = dict(others or {})

    def users(agent: str) -> UserInfo | None:
        if agent == "kos-controller-manager":
            return UserInfo(CONTROLLER_MANAGER, groups=(AUTHENTICATED,))
        if agent.startswith("kos-agent/"):
            node = agent[len("kos-agent/") :]
            return UserInfo(NODE_USER_PREFIX + node, groups=(NODES_GROUP, AUTHENTICATED))
        return table.get(agent)

    return users
