"""The built-in roles (ARCHITECTURE §10) as a table: each role × each resource/subresource × each verb is
allowed exactly where the table says, non-resource paths likewise; the union's first-opinion-wins rule; the
403's Status (reason Forbidden, details like kube-apiserver's)."""

from __future__ import annotations

import itertools

import pytest

from kos.api.errors import Forbidden
from kos.api.types import GROUP, VERSION
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.authz.build import build_authorizer
from kos.apiserver.auth.authz.policy import BuiltinPolicy
from kos.apiserver.auth.authz.union import Union
from kos.apiserver.auth.config import AuthSettings
from kos.apiserver.auth.gate import Decision, Gate, forbidden
from kos.apiserver.auth.user import (
    ANONYMOUS,
    AUTHENTICATED,
    CONTROLLER_MANAGER,
    MONITORING_GROUP,
    NODES_GROUP,
    SYSTEM_MASTERS,
    UserInfo,
)

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
TARGETS = (("subnets", ""), ("subnets", "status"), ("networkattachments", ""), ("networkattachments", "status"),
           ("iplocks", ""))  # fmt: skip
READ = {"get", "list", "watch"}

ADMIN = UserInfo("alice", groups=(SYSTEM_MASTERS, AUTHENTICATED))
CM = UserInfo(CONTROLLER_MANAGER, groups=(AUTHENTICATED,))
NODE = UserInfo("system:node:node-a", groups=(NODES_GROUP, AUTHENTICATED))
USER = UserInfo("bob", groups=("kos:users", AUTHENTICATED))
NOBODY = UserInfo("carol", groups=(AUTHENTICATED,))
MONITOR = UserInfo("prometheus", groups=(MONITORING_GROUP, AUTHENTICATED))

EXPECTED: dict[str, dict[tuple[str, str], set[str]]] = {
    "admin": {t: set(VERBS) for t in TARGETS},
    "cm": {("subnets", ""): READ, ("subnets", "status"): {"get", "update", "patch"},
           ("networkattachments", ""): READ, ("networkattachments", "status"): {"get", "update", "patch"},
           ("iplocks", ""): set(VERBS)},
    "node": {("subnets", ""): READ, ("subnets", "status"): {"get"}, ("networkattachments", ""): READ,
             ("networkattachments", "status"): {"get", "update", "patch"}, ("iplocks", ""): set()},
    "user": {("subnets", ""): set(VERBS), ("subnets", "status"): {"get"}, ("networkattachments", ""): set(VERBS),
             ("networkattachments", "status"): {"get"}, ("iplocks", ""): READ},
    "nobody": {t: set() for t in TARGETS},
    "anonymous": {t: set() for t in TARGETS},
}  # fmt: skip
USERS = {"admin": ADMIN, "cm": CM, "node": NODE, "user": USER, "nobody": NOBODY, "anonymous": ANONYMOUS}

POLICY = BuiltinPolicy("kos:users")


def res(user: UserInfo, verb: str, resource: str, sub: str = "", ns: str = "ns1", name: str = "") -> Attributes:
    return Attributes(user, verb, api_group=GROUP, api_version=VERSION, resource=resource, subresource=sub,
                      namespace=ns, name=name)  # fmt: skip


def path(user: UserInfo, p: str, verb: str = "get") -> Attributes:
    return Attributes(user, verb, resource_request=False, path=p)


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_has_exactly_its_verbs_on_each_resource(role: str) -> None:
    user = USERS[role]
    for (resource, sub), verb in itertools.product(TARGETS, VERBS):
        want = verb in EXPECTED[role][(resource, sub)]
        assert POLICY.decide(res(user, verb, resource, sub)) is want, (role, verb, resource, sub)


def test_namespace_and_cluster_scope_do_not_matter_to_the_roles() -> None:
    assert POLICY.decide(res(NODE, "watch", "networkattachments", ns=""))
    assert POLICY.decide(res(USER, "list", "subnets", ns=""))
    assert not POLICY.decide(res(NODE, "list", "iplocks", ns=""))


def test_a_node_needs_both_its_name_and_the_nodes_group() -> None:
    assert not POLICY.decide(res(UserInfo("system:node:x", groups=(AUTHENTICATED,)), "list", "networkattachments"))
    assert not POLICY.decide(res(UserInfo("x", groups=(NODES_GROUP,)), "list", "networkattachments"))


def test_the_users_group_is_the_one_configured() -> None:
    other = BuiltinPolicy("net-admins")
    assert not other.decide(res(USER, "create", "subnets"))
    assert other.decide(res(UserInfo("d", groups=("net-admins",)), "create", "subnets"))


def test_another_api_group_is_not_kos() -> None:
    a = Attributes(USER, "create", api_group="apps", api_version="v1", resource="subnets", namespace="ns1")
    assert not POLICY.decide(a)


@pytest.mark.parametrize("p", ["/api", "/api/v1", "/apis", "/apis/network.example.com/v1alpha1", "/openapi/v2",
                               "/openapi/v3/apis/network.example.com/v1alpha1", "/version", "/healthz", "/livez",
                               "/readyz"])  # fmt: skip
def test_every_authenticated_user_reads_discovery_openapi_and_probes(p: str) -> None:
    for u in (NOBODY, NODE, CM, USER):
        assert POLICY.decide(path(u, p)) and POLICY.decide(path(u, p, "head"))
        assert not POLICY.decide(path(u, p, "post"))
    assert POLICY.decide(path(ANONYMOUS, p)) is (p in ("/version", "/healthz", "/livez", "/readyz"))


def test_namespaces_are_readable_by_the_authenticated_only() -> None:
    for verb in ("get", "list"):
        a = Attributes(NOBODY, verb, api_version="v1", resource="namespaces", name="ns1" if verb == "get" else "")
        assert POLICY.decide(a)
        assert not POLICY.decide(Attributes(ANONYMOUS, verb, api_version="v1", resource="namespaces"))
    assert not POLICY.decide(Attributes(NOBODY, "create", api_version="v1", resource="namespaces"))


def test_metrics_are_for_admins_and_monitoring_only() -> None:
    assert POLICY.decide(path(ADMIN, "/metrics")) and POLICY.decide(path(MONITOR, "/metrics"))
    for u in (NOBODY, NODE, CM, USER, ANONYMOUS):
        assert not POLICY.decide(path(u, "/metrics"))


def test_paths_are_matched_exactly_or_by_their_prefix_with_a_slash() -> None:
    assert not POLICY.decide(path(NOBODY, "/apisx"))
    assert not POLICY.decide(path(NOBODY, "/healthz/etcd"))
    assert not POLICY.decide(path(NOBODY, "/openapi"))


class Fixed:
    def __init__(self, decision: Decision, reason: str = "") -> None:
        self.decision, self.reason, self.asked = decision, reason, 0

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        self.asked += 1
        return self.decision, self.reason


async def test_the_union_takes_the_first_opinion_and_goes_on_past_none() -> None:
    a = res(NOBODY, "get", "subnets")
    deny, allow = Fixed(Decision.DENY, "no"), Fixed(Decision.ALLOW)
    assert await Union([Fixed(Decision.NO_OPINION, "p"), deny, allow]).authorize(a) == (Decision.DENY, "no")
    assert allow.asked == 0
    assert await Union([Fixed(Decision.NO_OPINION), allow, deny]).authorize(a) == (Decision.ALLOW, "")
    none = await Union([Fixed(Decision.NO_OPINION, "p"), Fixed(Decision.NO_OPINION, "q")]).authorize(a)
    assert none == (Decision.NO_OPINION, "p; q")


async def test_a_policy_allow_is_not_overridden_and_its_no_opinion_is_a_403() -> None:
    deny = Fixed(Decision.DENY)
    gate = Gate(None, Union([POLICY, deny]))
    await gate.authorize(res(USER, "create", "subnets"))
    assert deny.asked == 0
    with pytest.raises(Forbidden):
        await gate.authorize(res(NODE, "create", "subnets"))
    assert deny.asked == 1


async def test_build_authorizer_is_the_policy_alone_without_a_webhook() -> None:
    a = build_authorizer(AuthSettings(users_group="g"))
    assert isinstance(a, BuiltinPolicy) and a.users_group == "g"
    assert await a.authorize(res(UserInfo("x", groups=("g",)), "create", "subnets")) == (Decision.ALLOW, "")
    assert await a.authorize(res(UserInfo("x"), "create", "subnets")) == (Decision.NO_OPINION, "")


def test_the_403_is_kube_apiservers() -> None:
    e = forbidden(res(NODE, "update", "networkattachments", "status", name="na1"), "")
    st = e.to_status()
    assert (st.code, st.reason) == (403, "Forbidden")
    assert st.details is not None
    assert (st.details.name, st.details.group, st.details.kind) == ("na1", GROUP, "networkattachments")
    assert st.message == (
        f'networkattachments.{GROUP} "na1" is forbidden: User "system:node:node-a" cannot update resource'
        f' "networkattachments/status" in API group "{GROUP}" in the namespace "ns1"'
    )
    cluster = forbidden(res(USER, "list", "iplocks", ns=""), "why").message
    assert cluster.endswith(
        'cannot list resource "iplocks" in API group "network.example.com" at the cluster scope: why'
    )
    assert forbidden(path(NOBODY, "/metrics"), "").message == 'forbidden: User "carol" cannot get path "/metrics"'
