"""The built-in policy's rows for Lease (coordination.k8s.io/v1): who may elect a leader, who may read who leads.

The controller manager holds kube-controller-manager's leader-locking Role: get/list/watch/create/update/patch
leases in `kube-system` only (never delete, never elsewhere); users read leases; admins do everything; nodes
and other authenticated users nothing.
"""

from __future__ import annotations

import itertools

import pytest

from kos.api.types import COORDINATION_GROUP, LEADER_ELECTION_NAMESPACE
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.authz.policy import BuiltinPolicy
from kos.apiserver.auth.user import (
    ANONYMOUS,
    AUTHENTICATED,
    CONTROLLER_MANAGER,
    NODES_GROUP,
    SYSTEM_MASTERS,
    UserInfo,
)

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
READ = {"get", "list", "watch"}
USERS = {
    "admin": UserInfo("alice", groups=(SYSTEM_MASTERS, AUTHENTICATED)),
    "cm": UserInfo(CONTROLLER_MANAGER, groups=(AUTHENTICATED,)),
    "node": UserInfo("system:node:node-a", groups=(NODES_GROUP, AUTHENTICATED)),
    "user": UserInfo("bob", groups=("kos:users", AUTHENTICATED)),
    "nobody": UserInfo("carol", groups=(AUTHENTICATED,)),
    "anonymous": ANONYMOUS,
}
EXPECTED: dict[str, dict[str, set[str]]] = {  # role -> namespace -> verbs on leases
    "admin": {LEADER_ELECTION_NAMESPACE: set(VERBS), "ns1": set(VERBS), "": set(VERBS)},
    "cm": {LEADER_ELECTION_NAMESPACE: READ | {"create", "update", "patch"}, "ns1": set(), "": set()},
    "node": {LEADER_ELECTION_NAMESPACE: set(), "ns1": set(), "": set()},
    "user": {LEADER_ELECTION_NAMESPACE: READ, "ns1": READ, "": READ},
    "nobody": {LEADER_ELECTION_NAMESPACE: set(), "ns1": set(), "": set()},
    "anonymous": {LEADER_ELECTION_NAMESPACE: set(), "ns1": set(), "": set()},
}
POLICY = BuiltinPolicy("kos:users")


def lease(user: UserInfo, verb: str, namespace: str, group: str = COORDINATION_GROUP) -> Attributes:
    return Attributes(user, verb, api_group=group, api_version="v1", resource="leases", namespace=namespace,
                      name="kos-controller-manager" if verb not in ("list", "watch", "create") else "")  # fmt: skip


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_has_exactly_its_verbs_on_leases(role: str) -> None:
    for (ns, want), verb in itertools.product(EXPECTED[role].items(), VERBS):
        assert POLICY.decide(lease(USERS[role], verb, ns)) is (verb in want), (role, verb, ns)


def test_leases_of_another_group_are_not_granted() -> None:
    """The rule names coordination.k8s.io: `leases` of kos's own group (which has none) is not the same resource."""
    assert not POLICY.decide(lease(USERS["cm"], "update", LEADER_ELECTION_NAMESPACE, group="network.example.com"))
    assert not POLICY.decide(lease(USERS["user"], "get", "ns1", group="network.example.com"))
