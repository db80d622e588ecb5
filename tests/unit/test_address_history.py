"""The every-revision check of invariant 1 (kos.verify.history): what `kos verify --watch` and the tests rely on."""

from __future__ import annotations

from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
from kos.verify.history import AddressHistory


def na(name: str, rv: int, ip: str = "", vni: int = 7, ns: str = "a") -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace=ns, resource_version=str(rv)),
        spec=NetworkAttachmentSpec(node="n", subnet="s"),
        status=NetworkAttachmentStatus(ipv4=ip, address_vni=vni if ip else 0),
    )


def test_an_address_shown_twice_for_one_revision_is_caught() -> None:
    h = AddressHistory([na("x", 5, "10.0.0.9")], "5")
    h.apply("ADDED", na("y", 6))
    h.apply("MODIFIED", na("y", 7, "10.0.0.9"))  # x still shows it: a violation at revision 7
    h.apply("MODIFIED", na("x", 8, ""))  # too late
    assert h.violations == ["address: at revision 7 10.0.0.9 in VNI 7 is shown by 2 NAs: a/x, a/y"]
    assert h.shown == {"a/y": (7, "10.0.0.9")} and h.events == 3


def test_handing_an_address_over_in_order_is_fine() -> None:
    h = AddressHistory([na("x", 5, "10.0.0.9"), na("z", 5, "10.0.0.9", vni=8)], "5")
    h.apply("MODIFIED", na("x", 6, ""))
    h.apply("MODIFIED", na("y", 7, "10.0.0.9"))
    h.apply("DELETED", na("y", 8, "10.0.0.9"))
    h.apply("ADDED", na("x", 9, "10.0.0.9"))
    assert h.violations == [] and h.revision == "9"


def test_a_snapshot_that_already_shows_an_address_twice_is_reported() -> None:
    h = AddressHistory([na("x", 5, "10.0.0.9"), na("y", 5, "10.0.0.9")], "5")
    assert h.violations == ["address: at revision 5 10.0.0.9 in VNI 7 is shown by 2 NAs: a/x, a/y"]
