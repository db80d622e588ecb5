"""The node restriction's diff: which fields of an attachment a node agent and the controller manager may
change, on whose attachments, and that every other user and write is not checked at all."""

from __future__ import annotations

import datetime

import msgspec
import pytest

from kos.api.errors import Forbidden
from kos.api.meta import ObjectMeta
from kos.api.types import (
    GROUP,
    VERSION,
    ExecReport,
    NetworkAttachment,
    NetworkAttachmentErrors,
    NetworkAttachmentSpec,
    NetworkAttachmentStatus,
)
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.noderestriction import IPAM_OWNED, NODE_OWNED, NodeRestriction, changed_fields
from kos.apiserver.auth.user import AUTHENTICATED, CONTROLLER_MANAGER, NODES_GROUP, SYSTEM_MASTERS, UserInfo

NODE_A = UserInfo("system:node:node-a", groups=(NODES_GROUP, AUTHENTICATED))
CM = UserInfo(CONTROLLER_MANAGER, groups=(AUTHENTICATED,))
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

OLD = NetworkAttachment(
    metadata=ObjectMeta(name="na1", namespace="ns1", uid="u1", labels={"a": "b"}),
    spec=NetworkAttachmentSpec(node="node-a", subnet="s1"),
    status=NetworkAttachmentStatus(ipv4="10.0.0.2", address_vni=7, lock_uid="l1", subnet_creation_time=T0),
)
ALL_CHANGED = NetworkAttachmentStatus(
    errors=NetworkAttachmentErrors(ipam=("e",), host=("h",)), subnet_creation_time=T0 + datetime.timedelta(1),
    address_contention=True, lock_uid="l2", address_vni=8, ipv4="10.0.0.3", mac_address="m", ifc_name="i",
    host_ip="192.0.2.1", post_create_exec_report=ExecReport(exit_status=1),
)  # fmt: skip
PLAN = NodeRestriction()


def attrs(
    user: UserInfo, verb: str = "update", resource: str = "networkattachments", sub: str = "status"
) -> Attributes:
    return Attributes(user, verb, api_group=GROUP, api_version=VERSION, resource=resource, subresource=sub,
                      namespace="ns1", name="na1")  # fmt: skip


def with_status(**changes: object) -> NetworkAttachment:
    return msgspec.structs.replace(OLD, status=msgspec.structs.replace(OLD.status, **changes))


def test_changed_fields_names_every_status_field_by_its_wire_path() -> None:
    assert changed_fields(OLD, OLD) == []
    new = msgspec.structs.replace(OLD, status=ALL_CHANGED)
    assert set(changed_fields(new, OLD)) == NODE_OWNED | IPAM_OWNED


def test_changed_fields_sees_spec_and_the_metadata_clients_write_but_not_the_servers() -> None:
    new = msgspec.structs.replace(
        OLD, spec=msgspec.structs.replace(OLD.spec, node="node-b", post_delete_exec=("x",)),
        metadata=msgspec.structs.replace(OLD.metadata, labels={}, finalizers=("f",), resource_version="9",
                                         generation=3),
    )  # fmt: skip
    assert changed_fields(new, OLD) == ["spec.node", "spec.postDeleteExec", "metadata.labels", "metadata.finalizers"]


@pytest.mark.parametrize("verb", ["update", "patch"])
def test_a_node_may_change_its_own_fields_of_its_own_attachments(verb: str) -> None:
    admit = PLAN.for_write(attrs(NODE_A, verb))
    assert admit is not None
    admit(with_status(mac_address="m", ifc_name="i", host_ip="192.0.2.1", post_create_exec_report=ExecReport(),
                      errors=NetworkAttachmentErrors(host=("h",))), OLD)  # fmt: skip
    admit(OLD, OLD)  # an unchanged write is judged too, and passes


IPAM_CHANGES: dict[str, dict[str, object]] = {
    "status.ipv4": {"ipv4": "10.0.0.3"}, "status.addressVNI": {"address_vni": 8}, "status.lockUID": {"lock_uid": ""},
    "status.addressContention": {"address_contention": True}, "status.subnetCreationTime": {"subnet_creation_time": None},
    "status.errors.ipam": {"errors": NetworkAttachmentErrors(ipam=("e",))},
}  # fmt: skip


def test_the_ipam_fields_are_these() -> None:
    assert set(IPAM_CHANGES) == IPAM_OWNED


@pytest.mark.parametrize("field", sorted(IPAM_CHANGES))
def test_a_node_may_not_change_an_ipam_field(field: str) -> None:
    admit = PLAN.for_write(attrs(NODE_A))
    assert admit is not None
    with pytest.raises(Forbidden) as e:
        admit(with_status(mac_address="m", host_ip="192.0.2.1", **IPAM_CHANGES[field]), OLD)
    assert e.value.message.endswith(f"not {field}") and e.value.code == 403


def test_a_node_may_not_write_another_nodes_attachment_whatever_it_sends() -> None:
    admit = PLAN.for_write(attrs(UserInfo("system:node:node-b", groups=(NODES_GROUP,))))
    assert admit is not None
    for new in (OLD, with_status(mac_address="m")):
        with pytest.raises(Forbidden, match='on node "node-a", not on "node-b"'):
            admit(new, OLD)
    moved = msgspec.structs.replace(OLD, spec=msgspec.structs.replace(OLD.spec, node="node-b"))
    with pytest.raises(Forbidden, match='on node "node-a"'):  # the stored object decides, not the one sent
        admit(moved, OLD)


@pytest.mark.parametrize(("verb", "resource", "sub"), [
    ("create", "networkattachments", ""), ("delete", "networkattachments", ""), ("update", "networkattachments", ""),
    ("patch", "subnets", "status"), ("create", "subnets", ""), ("deletecollection", "iplocks", ""),
])  # fmt: skip
def test_every_other_write_of_a_node_is_refused(verb: str, resource: str, sub: str) -> None:
    admit = PLAN.for_write(attrs(NODE_A, verb, resource, sub))
    assert admit is not None
    with pytest.raises(Forbidden, match="node restriction"):
        admit(None, None)


def test_the_controller_manager_may_change_only_ipam_fields() -> None:
    admit = PLAN.for_write(attrs(CM, "update"))
    assert admit is not None
    admit(with_status(ipv4="", address_vni=0, lock_uid="", errors=NetworkAttachmentErrors(ipam=("x",))), OLD)
    with pytest.raises(Forbidden, match=r"not status\.hostIP"):
        admit(with_status(host_ip="192.0.2.9"), OLD)
    assert PLAN.for_write(attrs(CM, "create", "iplocks", "")) is None
    assert PLAN.for_write(attrs(CM, "update", "subnets", "status")) is None


def test_other_users_are_not_checked() -> None:
    for u in (UserInfo("bob", groups=("kos:users",)), UserInfo("root", groups=(SYSTEM_MASTERS,)),
              UserInfo("system:node:x")):  # fmt: skip
        assert PLAN.for_write(attrs(u)) is None
    # `system:node:` in system:nodes names no node: every write refused (tests/integration/test_node_identity_review.py)
    assert PLAN.for_write(attrs(UserInfo("system:node:", groups=(NODES_GROUP,)))) is not None
