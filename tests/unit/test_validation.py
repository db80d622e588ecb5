"""Validation rules of reference §2.4–2.6 and ARCHITECTURE §4/§12, as pure functions."""

from __future__ import annotations

import pytest

from kos.api import cidr, errors, validation
from kos.api.meta import ObjectMeta, OwnerReference
from kos.api.types import (
    IPLock,
    IPLockSpec,
    NetworkAttachment,
    NetworkAttachmentSpec,
    Subnet,
    SubnetSpec,
)


def subnet(vni: int = 5, ipv4: str = "10.0.0.0/24", **meta: object) -> Subnet:
    return Subnet(metadata=ObjectMeta(name="s", namespace="ns", **meta), spec=SubnetSpec(vni=vni, ipv4=ipv4))


def fields(errs: list) -> list[str]:  # type: ignore[type-arg]
    return [e.field for e in errs]


def test_valid_subnet() -> None:
    assert validation.validate_subnet(subnet()) == []


@pytest.mark.parametrize("vni", [0, 2097152, -1])
def test_vni_range(vni: int) -> None:
    errs = validation.validate_subnet(subnet(vni=vni))
    assert fields(errs) == ["spec.vni"]
    assert str(errs[0]) == f"spec.vni: Invalid value: {vni}: must be in [1,2097151]"


@pytest.mark.parametrize("vni", [1, 2097151])
def test_vni_bounds_are_valid(vni: int) -> None:
    assert validation.validate_subnet(subnet(vni=vni)) == []


@pytest.mark.parametrize(
    ("ipv4", "fragment"),
    [
        ("8.8.8.0/24", "RFC 1918"),
        ("172.15.255.0/24", "RFC 1918"),
        ("172.31.0.0/15", "host bits"),  # 172.30/15 would span out of 172.16/12? no: host bits set first
        ("10.0.0.0/7", "RFC 1918"),
        ("192.168.0.0/15", "RFC 1918"),
        ("10.0.0.1/24", "did you mean 10.0.0.0/24?"),
        ("fd00::/64", "IPv6"),
        ("10.0.0.0", "prefix length is missing"),
        ("10.0.0.0/33", "prefix length"),
        ("banana", "IPv4 CIDR"),
        ("", "required"),
    ],
)
def test_bad_cidrs(ipv4: str, fragment: str) -> None:
    errs = validation.validate_subnet(subnet(ipv4=ipv4))
    assert fields(errs) == ["spec.ipv4"]
    assert fragment.lower() in str(errs[0]).lower()


def test_rfc1918_blocks_exactly() -> None:
    for ok in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "172.31.255.252/30", "192.168.255.255/32"):
        assert validation.validate_subnet(subnet(ipv4=ok)) == [], ok
    for bad in ("172.0.0.0/8", "192.0.0.0/8", "0.0.0.0/0", "11.0.0.0/8"):
        assert validation.validate_subnet(subnet(ipv4=bad)), bad


def test_subnet_spec_is_immutable() -> None:
    old = subnet()
    errs = validation.validate_subnet_update(subnet(vni=6, ipv4="10.0.1.0/24"), old)
    assert sorted(fields(errs)) == ["spec.ipv4", "spec.vni"]
    assert all("immutable" in str(e) for e in errs)


def test_assignable_range() -> None:
    b = cidr.parse_block("10.0.0.0/29")
    assert b.assignable() == (b.base + 2, b.last - 1)
    small = cidr.parse_block("10.0.0.0/30")
    assert small.assignable() == (small.base, small.last)


def na(
    node: str = "n1", subnet: str = "s", pce: list[str] | None = None, pde: list[str] | None = None
) -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name="a", namespace="ns"),
        spec=NetworkAttachmentSpec(node=node, subnet=subnet, post_create_exec=pce or [], post_delete_exec=pde or []),
    )


def test_na_requires_node_and_subnet() -> None:
    assert fields(validation.validate_network_attachment(na(node="", subnet=""))) == ["spec.node", "spec.subnet"]
    assert fields(validation.validate_network_attachment(na(node="Bad_Node"))) == ["spec.node"]
    assert validation.validate_network_attachment(na()) == []


def test_na_exec_bounds() -> None:
    assert fields(validation.validate_network_attachment(na(pce=["x"] * 65))) == ["spec.postCreateExec"]
    assert fields(validation.validate_network_attachment(na(pde=["/bin/x", "y" * 5000]))) == ["spec.postDeleteExec[1]"]
    assert fields(validation.validate_network_attachment(na(pce=["", "a"]))) == ["spec.postCreateExec[0]"]


def test_na_immutable_fields_but_post_delete_exec() -> None:
    old = na(pce=["/a"], pde=["/b"])
    errs = validation.validate_network_attachment_update(na(node="n2", subnet="t", pce=["/c"], pde=["/d"]), old)
    assert sorted(fields(errs)) == ["spec.node", "spec.postCreateExec", "spec.subnet"]
    assert validation.validate_network_attachment_update(na(pce=["/a"], pde=["/other"]), old) == []


def test_object_meta_rules() -> None:
    bad = ObjectMeta(
        name="UPPER",
        namespace="a.b",
        labels={"bad key!": "v", "ok": "bad value!"},
        finalizers=["no spaces allowed"],
        owner_references=[
            OwnerReference(api_version="v", kind="K", name="n", uid="1", controller=True),
            OwnerReference(api_version="v", kind="K", name="m", uid="2", controller=True),
            OwnerReference(api_version="", kind="", name="", uid=""),
        ],
    )
    errs = validation.validate_object_meta(bad)
    got = set(fields(errs))
    assert {"metadata.name", "metadata.namespace", "metadata.labels", "metadata.labels[ok]", "metadata.finalizers[0]",
            "metadata.ownerReferences", "metadata.ownerReferences[2].uid"} <= got  # fmt: skip
    assert validation.validate_object_meta(ObjectMeta(generate_name="gen-", namespace="ns")) == []
    assert fields(validation.validate_object_meta(ObjectMeta(namespace="ns"))) == ["metadata.name"]


def test_iplock_spec_immutable() -> None:
    old = IPLock(metadata=ObjectMeta(name="v1-1-10-0-0-2", namespace="ns"), spec=IPLockSpec(subnet_name="s"))
    new = IPLock(metadata=ObjectMeta(name="v1-1-10-0-0-2", namespace="ns"), spec=IPLockSpec(subnet_name="t"))
    assert fields(validation.validate_iplock_update(new, old)) == ["spec"]


def test_invalid_error_message_shape() -> None:
    errs = validation.validate_subnet(subnet(vni=0, ipv4="8.0.0.0/8"))
    e = errors.invalid("Subnet", "s", errs)
    assert e.code == 422 and e.reason == "Invalid"
    assert e.message.startswith('Subnet.network.example.com "s" is invalid: [spec.vni: Invalid value: 0:')
    assert [c.field for c in e.causes] == ["spec.vni", "spec.ipv4"]
    assert e.causes[0].reason == "FieldValueInvalid"


def test_no_new_finalizers_once_deletion_started() -> None:
    """apimachinery's ValidateNoNewFinalizers (kubernetes #32339): only removal once deletionTimestamp is set."""
    import datetime

    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    meta = ObjectMeta(name="s", namespace="ns", finalizers=("example.com/a",))
    deleting = ObjectMeta(name="s", namespace="ns", finalizers=("example.com/a",), deletion_timestamp=when)
    grown = ObjectMeta(name="s", namespace="ns", finalizers=("example.com/z", "example.com/a", "example.com/b"),
                       deletion_timestamp=when)  # fmt: skip
    # before deletion: adding is fine
    assert validation.validate_object_meta_update(grown, meta) == []
    # once deletion started: adding is Forbidden, with Kubernetes' message (new ones sorted, Go's %#v)
    errs = validation.validate_object_meta_update(grown, deleting)
    assert [(e.type.reason, e.field) for e in errs] == [("FieldValueForbidden", "metadata.finalizers")]
    assert str(errs[0]) == (
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new"
        ' finalizers []string{"example.com/b", "example.com/z"}'
    )
    # replacing one by another is adding one
    swapped = ObjectMeta(name="s", namespace="ns", finalizers=("example.com/b",), deletion_timestamp=when)
    assert fields(validation.validate_object_meta_update(swapped, deleting)) == ["metadata.finalizers"]
    # removing, keeping or reordering is fine
    for kept in ((), ("example.com/a",)):
        same = ObjectMeta(name="s", namespace="ns", finalizers=kept, deletion_timestamp=when)
        assert validation.validate_object_meta_update(same, deleting) == []
    # every kind's update validation applies it
    old_sn, new_sn = subnet(**{"deletion_timestamp": when}), subnet(finalizers=("example.com/x",))
    assert fields(validation.validate_subnet_update(new_sn, old_sn)) == ["metadata.finalizers"]
