"""The identity a request is served as, and the well-known names kos' roles are built on.

`UserInfo` is Kubernetes' `user.Info` (k8s.io/apiserver `pkg/authentication/user`): a name, a uid, groups
and extra values; the names below are Kubernetes' own where Kubernetes has one (`system:masters`,
`system:nodes`, `system:node:<name>`, `system:anonymous`, `system:authenticated`) and kos' where it has
none (`system:kos:controller-manager`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType

SYSTEM_MASTERS = "system:masters"
"""The group whose members may do everything (kube-apiserver short-circuits it, as kos does)."""
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
"""A node agent is the user `system:node:<node name>` in the group `system:nodes` (the kubelet's identity)."""
CONTROLLER_MANAGER = "system:kos:controller-manager"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"
MONITORING_GROUP = "system:monitoring"
"""Kubernetes' group for reading /metrics (ClusterRole system:monitoring)."""

_NO_EXTRA: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class UserInfo:
    """One authenticated identity: `name` (""-free), `uid` ("" if none), `groups`, `extra` (key → values;
    keys lower-case as the front proxy delivers them)."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=lambda: _NO_EXTRA)

    def node_name(self) -> str | None:
        """The node this identity is the agent of, or None: `system:node:<n>` in `system:nodes`."""
        if self.name.startswith(NODE_USER_PREFIX) and NODES_GROUP in self.groups:
            return self.name[len(NODE_USER_PREFIX) :] or None
        return None


def authenticated(
    name: str,
    uid: str = "",
    groups: Iterable[str] = (),
    extra: Mapping[str, tuple[str, ...]] | None = None,
) -> UserInfo:
    """The `UserInfo` an authenticator found, with `system:authenticated` added to its groups unless present
    (k8s.io/apiserver `pkg/authentication/group.AuthenticatedGroupAdder`); empty groups are dropped."""
    gs = [g for g in groups if g]
    if AUTHENTICATED not in gs:
        gs.append(AUTHENTICATED)
    return UserInfo(name, uid, tuple(gs), MappingProxyType(dict(extra)) if extra else _NO_EXTRA)


ANONYMOUS = UserInfo(ANONYMOUS_USER, groups=(UNAUTHENTICATED,))
UNSECURED = UserInfo("system:unsecured", groups=(SYSTEM_MASTERS, AUTHENTICATED))
"""Who every request is on a server run with `--insecure` (kube-apiserver's old insecure port did the same)."""
