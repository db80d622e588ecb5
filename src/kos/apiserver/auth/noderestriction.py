"""Who may change which part of an attachment's status: kos' NodeRestriction admission.

Authorization decides by attributes alone (verb, resource, namespace), so `system:node:a` may update
`networkattachments/status` — anyone's. This admission step, run with the old and new object of each write
attempt, narrows that as Kubernetes' NodeRestriction narrows a kubelet to its own node and pods
(k8s.io/kubernetes `plugin/pkg/admission/noderestriction`; kos-reference.md §0 item 7, ARCHITECTURE §10):

- a node agent (`UserInfo.node_name()`) may update or patch `networkattachments/status` only of attachments
  whose *stored* `spec.node` is its node, and may change only the fields the agent owns (`NODE_OWNED`:
  status.macAddress, ifcName, hostIP, errors.host, postCreateExecReport); any other write by a node (creating,
  deleting, writing another resource, even if some authorizer allowed it) is refused;
- the controller manager (`system:kos:controller-manager`) may change only the fields IPAM owns in an
  attachment's status (`IPAM_OWNED`: status.ipv4, addressVNI, lockUID, addressContention, subnetCreationTime,
  errors.ipam), which is all its address status writer sends.

A refusal is a 403 `Status` (`gate.forbidden`) naming the first field that may not change. Every other user
and write has no check: `NodeRestriction.for_write` returns None, and the write path does nothing more.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kos.api.resources import NETWORK_ATTACHMENTS
from kos.api.types import GROUP, NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.gate import Admit, forbidden
from kos.apiserver.auth.user import CONTROLLER_MANAGER, NODE_USER_PREFIX, NODES_GROUP

NODE_OWNED = frozenset({"status.macAddress", "status.ifcName", "status.hostIP", "status.errors.host",
                        "status.postCreateExecReport"})  # fmt: skip
"""The fields of an attachment a node agent writes (the `impl` section, host errors, the exec report)."""
IPAM_OWNED = frozenset({"status.ipv4", "status.addressVNI", "status.lockUID", "status.addressContention",
                        "status.subnetCreationTime", "status.errors.ipam"})  # fmt: skip
"""The fields of an attachment IPAM (the controller manager) writes (the `address` section)."""

_STATUS_FIELDS = tuple((f.name, "status." + f.encode_name) for f in msgspec.structs.fields(NetworkAttachmentStatus)
                       if f.name != "errors")  # fmt: skip
_SPEC_FIELDS = tuple((f.name, "spec." + f.encode_name) for f in msgspec.structs.fields(NetworkAttachmentSpec))
_META_FIELDS = (("labels", "metadata.labels"), ("annotations", "metadata.annotations"),
                ("finalizers", "metadata.finalizers"), ("owner_references", "metadata.ownerReferences"),
                ("deletion_timestamp", "metadata.deletionTimestamp"))  # fmt: skip
_STATUS_WRITES = frozenset({"update", "patch"})


def changed_fields(new: NetworkAttachment, old: NetworkAttachment) -> list[str]:
    """The fields (wire paths such as `status.ipv4`, `spec.node`, `metadata.labels`) whose values differ
    between `new` and `old`, spec first, then metadata, then status. Server-managed metadata (resourceVersion,
    generation, write times) is not compared."""
    out: list[str] = []
    if new.spec != old.spec:
        out.extend(wire for attr, wire in _SPEC_FIELDS if getattr(new.spec, attr) != getattr(old.spec, attr))
    nm, om = new.metadata, old.metadata
    out.extend(wire for attr, wire in _META_FIELDS if getattr(nm, attr) != getattr(om, attr))
    ns, os_ = new.status, old.status
    if ns != os_:
        out.extend(wire for attr, wire in _STATUS_FIELDS if getattr(ns, attr) != getattr(os_, attr))
        if ns.errors.ipam != os_.errors.ipam:
            out.append("status.errors.ipam")
        if ns.errors.host != os_.errors.host:
            out.append("status.errors.host")
    return out


class NodeRestriction:
    """The `gate.Admission` of the module docstring: `for_write(attrs)` → an `Admit` or None."""

    __slots__ = ()

    def for_write(self, attrs: Attributes) -> Admit | None:
        user = attrs.user
        name = user.name
        if name.startswith(NODE_USER_PREFIX):
            node = user.node_name()
            if node is not None:
                return _node_admit(attrs, node) if _is_attachment_status_write(attrs) else _refuse_node(attrs)
            if NODES_GROUP in user.groups:  # `system:node:` naming no node: whose attachments? none (as Kubernetes)
                return _refuse_node(attrs)
        elif name == CONTROLLER_MANAGER and _is_attachment_status_write(attrs):
            return _owned_fields_admit(attrs, IPAM_OWNED, "the controller manager", "IPAM's")
        return None


def _is_attachment_status_write(attrs: Attributes) -> bool:
    return (attrs.resource == NETWORK_ATTACHMENTS.plural and attrs.subresource == "status"
            and attrs.api_group == GROUP and attrs.verb in _STATUS_WRITES)  # fmt: skip


def _refuse_node(attrs: Attributes) -> Admit:
    def admit(new: Any, old: Any) -> None:
        raise forbidden(attrs, "node restriction: a node agent may write only the status of its own node's"
                               " networkattachments")  # fmt: skip

    return admit


def _node_admit(attrs: Attributes, node: str) -> Admit:
    fields = _owned_fields_admit(attrs, NODE_OWNED, "a node agent", "the agent's")

    def admit(new: NetworkAttachment, old: NetworkAttachment) -> None:
        if old.spec.node != node:
            raise forbidden(attrs, f'node restriction: the attachment is on node "{old.spec.node}", not on "{node}"')
        fields(new, old)

    return admit


def _owned_fields_admit(attrs: Attributes, owned: frozenset[str], who: str, whose: str) -> Admit:
    def admit(new: NetworkAttachment, old: NetworkAttachment) -> None:
        for f in changed_fields(new, old):
            if f not in owned:
                raise forbidden(attrs, f"{who} may change only {whose} fields of an attachment"
                                       f" ({', '.join(sorted(owned))}), not {f}")  # fmt: skip

    return admit
