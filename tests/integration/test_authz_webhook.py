"""Delegated authorization against a fake SubjectAccessReview endpoint (`kos.testing.kubeauthz`): the review
sent, the answers and their caches (each with its own TTL, on a fake clock), a webhook that fails or cannot be
reached (no opinion: denied), and the union with the built-in roles inside a running apiserver."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from kos.api.errors import Forbidden
from kos.api.meta import ObjectMeta
from kos.api.types import GROUP, VERSION, IPLock, IPLockSpec, Subnet
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.authn.webhook import WebhookEndpoint
from kos.apiserver.auth.authz.build import build_admission, build_authorizer
from kos.apiserver.auth.authz.webhook import SubjectAccessReviewer
from kos.apiserver.auth.config import AuthSettings, build_gate
from kos.apiserver.auth.gate import Decision, Gate
from kos.apiserver.auth.user import AUTHENTICATED, SYSTEM_MASTERS, UserInfo
from kos.client.rest import Client
from kos.testing.apiserver import running_apiserver
from kos.testing.clock import FakeClock
from kos.testing.kubeauth import FakeKubeAuth
from kos.testing.kubeauthz import (
    SUBJECT_ACCESS_REVIEWS,
    FakeSubjectAccessReview,
    HeaderAuthenticator,
    SARRule,
    user_agent_identity,
)

DAVE = UserInfo("dave", uid="u-7", groups=("devs", AUTHENTICATED), extra={"scopes": ("a", "b")})


def lock_list(user: UserInfo = DAVE, ns: str = "ns1") -> Attributes:
    return Attributes(user, "list", api_group=GROUP, api_version=VERSION, resource="iplocks", namespace=ns)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSubjectAccessReview]:
    rules = [SARRule(True, user="dave", resource="iplocks", namespace="ns1"),
             SARRule(False, user="dave", resource="iplocks"), SARRule(True, group="viewers", path="/metrics")]  # fmt: skip
    async with FakeSubjectAccessReview(rules, require="sekrit") as f:
        yield f


@pytest.fixture
async def sar(fake: FakeSubjectAccessReview) -> AsyncIterator[tuple[SubjectAccessReviewer, FakeClock]]:
    clock = FakeClock()
    r = SubjectAccessReviewer(WebhookEndpoint(fake.url, headers={"Authorization": "Bearer sekrit"}), clock=clock,
                              allowed_ttl=10.0, denied_ttl=4.0)  # fmt: skip
    try:
        yield r, clock
    finally:
        await r.aclose()


async def test_the_review_names_the_user_and_the_attributes(
    fake: FakeSubjectAccessReview, sar: tuple[SubjectAccessReviewer, FakeClock]
) -> None:
    r, _ = sar
    await r.authorize(Attributes(DAVE, "patch", api_group=GROUP, api_version=VERSION, resource="networkattachments",
                                 subresource="status", namespace="ns1", name="na1"))  # fmt: skip
    await r.authorize(Attributes(DAVE, "get", resource_request=False, path="/metrics"))
    first, second = fake.bodies
    assert (first["apiVersion"], first["kind"]) == ("authorization.k8s.io/v1", "SubjectAccessReview")
    assert first["spec"] == {
        "user": "dave", "uid": "u-7", "groups": ["devs", AUTHENTICATED], "extra": {"scopes": ["a", "b"]},
        "resourceAttributes": {"namespace": "ns1", "verb": "patch", "group": GROUP, "version": VERSION,
                               "resource": "networkattachments", "subresource": "status", "name": "na1"},
    }  # fmt: skip
    assert second["spec"]["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}


async def test_an_allowed_answer_is_cached_for_its_ttl(
    fake: FakeSubjectAccessReview, sar: tuple[SubjectAccessReviewer, FakeClock]
) -> None:
    r, clock = sar
    for _ in range(3):
        assert (await r.authorize(lock_list()))[0] is Decision.ALLOW
    assert fake.reviews == r.reviews == 1
    await clock.advance(9.9)
    assert (await r.authorize(lock_list()))[0] is Decision.ALLOW
    assert fake.reviews == 1
    await clock.advance(0.2)
    assert (await r.authorize(lock_list()))[0] is Decision.ALLOW
    assert fake.reviews == 2


async def test_a_denied_answer_is_cached_for_its_own_ttl(
    fake: FakeSubjectAccessReview, sar: tuple[SubjectAccessReviewer, FakeClock]
) -> None:
    r, clock = sar
    assert await r.authorize(lock_list(ns="ns2")) == (Decision.DENY, "denied by a test rule")
    assert await r.authorize(lock_list(ns="ns2")) == (Decision.DENY, "denied by a test rule")
    assert fake.reviews == 1
    await clock.advance(4.1)  # past the denied TTL, well within the allowed one
    fake.rules.insert(0, SARRule(True, user="dave"))
    assert (await r.authorize(lock_list(ns="ns2")))[0] is Decision.ALLOW
    assert fake.reviews == 2


async def test_neither_allowed_nor_denied_is_no_opinion_and_cached_as_a_denial(
    fake: FakeSubjectAccessReview, sar: tuple[SubjectAccessReviewer, FakeClock]
) -> None:
    r, clock = sar
    nobody = UserInfo("eve")
    assert await r.authorize(lock_list(nobody)) == (Decision.NO_OPINION, "")
    assert await r.authorize(lock_list(nobody)) == (Decision.NO_OPINION, "")
    assert fake.reviews == 1
    await clock.advance(5)
    await r.authorize(lock_list(nobody))
    assert fake.reviews == 2


async def test_a_failing_webhook_has_no_opinion_and_is_asked_again(
    fake: FakeSubjectAccessReview, sar: tuple[SubjectAccessReviewer, FakeClock]
) -> None:
    r, _ = sar
    fake.fail = True
    decision, reason = await r.authorize(lock_list())
    assert decision is Decision.NO_OPINION and "500" in reason
    fake.fail = False
    assert (await r.authorize(lock_list()))[0] is Decision.ALLOW  # the failure was not cached
    assert fake.reviews == 2


async def test_bad_credentials_for_the_webhook_are_no_opinion(fake: FakeSubjectAccessReview) -> None:
    r = SubjectAccessReviewer(WebhookEndpoint(fake.url, headers={"Authorization": "Bearer wrong"}))
    try:
        decision, reason = await r.authorize(lock_list())
    finally:
        await r.aclose()
    assert decision is Decision.NO_OPINION and "401" in reason and fake.reviews == 0


async def test_an_unreachable_webhook_is_a_denial() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    authz = build_authorizer(AuthSettings(), webhook=WebhookEndpoint(f"http://127.0.0.1:{port}"))
    try:
        decision, reason = await authz.authorize(lock_list())
        assert decision is Decision.NO_OPINION and "the authorization webhook failed" in reason
        with pytest.raises(Forbidden) as e:
            await Gate(None, authz).authorize(lock_list())
        assert "the authorization webhook failed" in e.value.message
    finally:
        await authz.aclose()


async def test_in_the_apiserver_the_roles_come_first_and_the_webhook_decides_the_rest(
    fake: FakeSubjectAccessReview,
) -> None:
    users = user_agent_identity({"dave": DAVE, "root": UserInfo("root", groups=(SYSTEM_MASTERS,))})
    authz = build_authorizer(
        AuthSettings(), webhook=WebhookEndpoint(fake.url, headers={"Authorization": "Bearer sekrit"})
    )
    gate = Gate(HeaderAuthenticator(users, b"user-agent"), authz, build_admission())
    async with running_apiserver(gate=gate) as server:
        root = Client(server.url, user_agent="root")
        dave = Client(server.url, user_agent="dave")
        try:
            await root.create(IPLock(metadata=ObjectMeta(name="l1", namespace="ns1"), spec=IPLockSpec()))
            assert fake.reviews == 0  # system:masters is the policy's: the webhook is not asked
            items, _ = await dave.list(IPLock, "ns1")
            assert [i.metadata.name for i in items] == ["l1"]
            with pytest.raises(Forbidden, match="denied by a test rule"):
                await dave.list(IPLock, "ns2")
            with pytest.raises(Forbidden):  # neither the roles nor the webhook allow it
                await dave.list(Subnet, "ns1")
            reviews = fake.reviews
            items, _ = await dave.list(IPLock, "ns1")
            assert fake.reviews == reviews  # cached
        finally:
            await root.close()
            await dave.close()
            await authz.aclose()


async def test_behind_kubernetes_a_reviewed_token_is_authorized_by_a_review() -> None:
    """The aggregated-API path: one fake Kubernetes API answers both TokenReview (`kos.testing.kubeauth`) and
    SubjectAccessReview (this module's rules, as a route of it)."""
    sar = FakeSubjectAccessReview([SARRule(True, user="dave", verb="list", resource="iplocks")])
    async with FakeKubeAuth() as kube:
        kube.tokens["dave-token"] = DAVE
        kube.route("POST", SUBJECT_ACCESS_REVIEWS, sar.review)
        endpoint = WebhookEndpoint(kube.url)
        s = AuthSettings()
        gate = build_gate(s, authorizer=build_authorizer(s, webhook=endpoint), admission=build_admission(),
                          token_review=endpoint)  # fmt: skip
        try:
            async with running_apiserver(gate=gate) as server:
                base = f"{server.url}/apis/{GROUP}/{VERSION}/namespaces/ns1"
                async with aiohttp.ClientSession(headers={"Authorization": "Bearer dave-token"}) as http:
                    async with http.get(f"{base}/iplocks") as r:
                        assert r.status == 200
                    async with http.get(f"{base}/subnets") as r:
                        assert r.status == 403 and (await r.json())["reason"] == "Forbidden"
        finally:
            await gate.aclose()
    assert kube.token_reviews >= 1 and sar.reviews == 2
