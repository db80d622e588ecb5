"""Review of issue 12: a write to kos' implicit namespaces is authorized with Kubernetes' verb for it.

`/api/v1/namespaces[/{name}]` are resource requests on the core group's `namespaces`. They were authorized with
the lower-cased HTTP method as the verb, so a 403 said `cannot post resource "namespaces"` and a
SubjectAccessReview asked about the verb `post`, which no Kubernetes RBAC rule names; Kubernetes' verbs are
create (POST on the collection), update (PUT), patch, delete and deletecollection (DELETE on the collection).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.authz.build import build_admission, build_authorizer
from kos.apiserver.auth.config import AuthSettings, build_gate
from kos.apiserver.auth.gate import Decision
from kos.testing.apiserver import running_apiserver

TOKEN = "review-token-of-a-node"


class Recorder:
    """The built-in policy, remembering the attributes it was asked about."""

    def __init__(self, s: AuthSettings) -> None:
        self.inner = build_authorizer(s)
        self.asked: list[Attributes] = []

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        self.asked.append(attrs)
        return await self.inner.authorize(attrs)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Recorder]]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f'{TOKEN},system:node:n1,n1,"system:nodes"\n')
    s = AuthSettings(token_auth_file=tokens)
    rec = Recorder(s)
    gate = build_gate(s, authorizer=rec, admission=build_admission())
    try:
        async with running_apiserver(gate=gate) as server:
            yield server.url, rec
    finally:
        await gate.aclose()


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [("POST", "/api/v1/namespaces", "create"), ("DELETE", "/api/v1/namespaces", "deletecollection"),
     ("PUT", "/api/v1/namespaces/default", "update"), ("PATCH", "/api/v1/namespaces/default", "patch"),
     ("DELETE", "/api/v1/namespaces/default", "delete"), ("GET", "/api/v1/namespaces", "list"),
     ("GET", "/api/v1/namespaces/default", "get")],
)  # fmt: skip
async def test_namespace_requests_are_authorized_with_kubernetes_verbs(
    served: tuple[str, Recorder], method: str, path: str, verb: str
) -> None:
    url, rec = served
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as s, s.request(method, url + path, headers=headers, json={}) as r:
        body = await r.json()
    name = "default" if path.endswith("/default") else ""
    assert [(a.verb, a.resource, a.name) for a in rec.asked] == [(verb, "namespaces", name)]
    if verb in ("get", "list"):
        assert r.status == 200
    else:
        assert r.status == 403
        assert f'cannot {verb} resource "namespaces"' in body["message"]
