"""kos' built-in roles (ARCHITECTURE §10), as a table answered with a few dict and set lookups.

Like Kubernetes' RBAC authorizer (k8s.io/kubernetes `plugin/pkg/auth/authorizer/rbac`) the policy only ever
grants: it answers ALLOW or NO_OPINION, never DENY, so an authorizer after it (delegated SubjectAccessReview)
may still allow what it does not. Members of `system:masters` may do everything (kube-apiserver's privileged
group short-circuit). The roles, by who holds them:

| who                                                   | may                                                    |
|-------------------------------------------------------|--------------------------------------------------------|
| controller manager (user `system:kos:controller-manager`) | get/list/watch subnets and networkattachments; get/update/patch their `status`; every verb on iplocks; get/list/watch/create/update/patch leases in `kube-system` (leader election, as kube-controller-manager's role there) |
| node agent (user `system:node:<n>` in `system:nodes`)  | get/list/watch subnets and networkattachments; get/update/patch `networkattachments/status` (admission narrows that to its own node's agent-owned fields: `kos.apiserver.auth.noderestriction`) |
| users (members of `AuthSettings.users_group`)          | every verb on subnets and networkattachments (not their status: get only); get/list/watch iplocks and leases (who leads; only the controller manager and admins write leases) |
| every authenticated user                               | discovery and OpenAPI (`/api`, `/api/*`, `/apis`, `/apis/*`, `/openapi/*`), `/version`, `/healthz`, `/livez`, `/readyz`; get/list namespaces |
| anonymous (`system:anonymous`)                         | `/healthz`, `/livez`, `/readyz`, `/version` |
| group `system:monitoring`                             | `/metrics` |

Non-resource paths take the verbs `get` and `head`. What each role holds was read off what the programs call
(`kos.controllers`, `kos.agent`); `tests/integration/test_authz_roles.py` runs them through a secure server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from kos.api.resources import IPLOCKS, LEASES, NETWORK_ATTACHMENTS, SUBNETS
from kos.api.types import COORDINATION_GROUP, GROUP, LEADER_ELECTION_NAMESPACE
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.gate import Decision
from kos.apiserver.auth.user import (
    ANONYMOUS_USER,
    CONTROLLER_MANAGER,
    MONITORING_GROUP,
    NODE_USER_PREFIX,
    NODES_GROUP,
    SYSTEM_MASTERS,
    UNAUTHENTICATED,
)

READ = frozenset({"get", "list", "watch"})
ALL_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})
STATUS_WRITE = frozenset({"get", "update", "patch"})
GET = frozenset({"get"})
PATH_VERBS = frozenset({"get", "head"})
LEASE_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch"})

ResourceRules = Mapping[str, Mapping[str, Mapping[str, frozenset[str]]]]
"""API group → resource (plural) → subresource ("" for the resource itself) → verbs."""


@dataclasses.dataclass(frozen=True, slots=True)
class Role:
    """What one role allows: `resources` (see `ResourceRules`), non-resource `paths` (exact) and `prefixes`
    (a path starting with one), each with `PATH_VERBS`; a `namespace` confines the resource rules to it (an RBAC
    Role rather than a ClusterRole)."""

    name: str
    resources: ResourceRules = dataclasses.field(default_factory=dict)
    paths: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    namespace: str = ""

    def allows(self, attrs: Attributes) -> bool:
        if not attrs.resource_request:
            p = attrs.path
            return attrs.verb in PATH_VERBS and (p in self.paths or p.startswith(self.prefixes))
        if self.namespace and attrs.namespace != self.namespace:
            return False
        by_resource = self.resources.get(attrs.api_group)
        if by_resource is None:
            return False
        by_sub = by_resource.get(attrs.resource)
        if by_sub is None:
            return False
        verbs = by_sub.get(attrs.subresource)
        return verbs is not None and attrs.verb in verbs


def rules(*entries: tuple[str, str, str, Iterable[str]]) -> ResourceRules:
    """`(group, resource, subresource, verbs)` entries as `ResourceRules`."""
    out: dict[str, dict[str, dict[str, frozenset[str]]]] = {}
    for group, resource, sub, verbs in entries:
        out.setdefault(group, {}).setdefault(resource, {})[sub] = frozenset(verbs)
    return out


_SN, _NA, _LK, _LE = SUBNETS.plural, NETWORK_ATTACHMENTS.plural, IPLOCKS.plural, LEASES.plural
HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})

CONTROLLER_MANAGER_ROLE = Role(
    "controller-manager",
    rules((GROUP, _SN, "", READ), (GROUP, _SN, "status", STATUS_WRITE),
          (GROUP, _NA, "", READ), (GROUP, _NA, "status", STATUS_WRITE),
          (GROUP, _LK, "", ALL_VERBS)),
)  # fmt: skip
CONTROLLER_MANAGER_LEASE_ROLE = Role(
    "controller-manager-leader-election",
    rules((COORDINATION_GROUP, _LE, "", LEASE_VERBS)),
    namespace=LEADER_ELECTION_NAMESPACE,
)
"""kube-controller-manager's `system::leader-locking-kube-controller-manager` Role in kube-system, for kos."""
NODE_ROLE = Role(
    "node",
    rules((GROUP, _SN, "", READ), (GROUP, _SN, "status", GET),
          (GROUP, _NA, "", READ), (GROUP, _NA, "status", STATUS_WRITE)),
)  # fmt: skip
USER_ROLE = Role(
    "user",
    rules((GROUP, _SN, "", ALL_VERBS), (GROUP, _SN, "status", GET),
          (GROUP, _NA, "", ALL_VERBS), (GROUP, _NA, "status", GET),
          (GROUP, _LK, "", READ), (COORDINATION_GROUP, _LE, "", READ)),
)  # fmt: skip
AUTHENTICATED_ROLE = Role(
    "authenticated",
    rules(("", "namespaces", "", ("get", "list"))),
    paths=HEALTH_PATHS | {"/api", "/apis"},
    prefixes=("/api/", "/apis/", "/openapi/"),
)
ANONYMOUS_ROLE = Role("anonymous", paths=HEALTH_PATHS)
MONITORING_ROLE = Role("monitoring", paths=frozenset({"/metrics"}))


_NODE_PREFIX_LEN = len(NODE_USER_PREFIX)
_ALLOW = (Decision.ALLOW, "")
_NO_OPINION = (Decision.NO_OPINION, "")


class BuiltinPolicy:
    """The roles above; `users_group` names the group whose members hold the user role (`--users-group`).

    `authorize(attrs)` → (ALLOW, "") or (NO_OPINION, ""); it never waits and allocates nothing.
    """

    __slots__ = ("users_group",)

    def __init__(self, users_group: str = "kos:users") -> None:
        self.users_group = users_group

    def decide(self, attrs: Attributes) -> bool:
        """Whether some role of `attrs.user` allows `attrs` (the synchronous core of `authorize`)."""
        user = attrs.user
        name, groups = user.name, user.groups
        if SYSTEM_MASTERS in groups:
            return True
        if name == ANONYMOUS_USER or UNAUTHENTICATED in groups:
            return ANONYMOUS_ROLE.allows(attrs)
        node = len(name) > _NODE_PREFIX_LEN and name.startswith(NODE_USER_PREFIX)  # `system:node:` alone is none
        if node and NODES_GROUP in groups and NODE_ROLE.allows(attrs):
            return True
        if name == CONTROLLER_MANAGER and (
            CONTROLLER_MANAGER_ROLE.allows(attrs) or CONTROLLER_MANAGER_LEASE_ROLE.allows(attrs)
        ):
            return True
        if self.users_group in groups and USER_ROLE.allows(attrs):
            return True
        if AUTHENTICATED_ROLE.allows(attrs):
            return True
        return MONITORING_GROUP in groups and MONITORING_ROLE.allows(attrs)

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        return _ALLOW if self.decide(attrs) else _NO_OPINION

    async def aclose(self) -> None:
        """Nothing to release (as `Union.aclose`, so either can be closed; `Gate.aclose` calls it)."""
