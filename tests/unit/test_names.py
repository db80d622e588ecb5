"""MAC, interface-name and IPLock-name derivation (reference §1.4, §4.9 worked examples)."""

from __future__ import annotations

import pytest

from kos.api import names


@pytest.mark.parametrize(
    ("vni", "ip", "mac"),
    [
        (0x1ABCDE, "10.1.2.3", "d6:01:02:03:bc:de"),
        (1, "172.24.0.2", "02:18:00:02:00:01"),
        (0x10001, "192.168.1.10", "0a:a8:01:0a:00:01"),
        (0x1FFFFF, "10.255.255.254", "fe:ff:ff:fe:ff:ff"),
    ],
)
def test_mac_worked_examples(vni: int, ip: str, mac: str) -> None:
    assert names.mac_address(vni, ip) == mac


def test_interface_name_worked_examples() -> None:
    assert names.interface_name(0x1ABCDE, "10.1.2.3") == "kosd6010203bcde"
    assert names.interface_name(1, "172.24.0.2") == "kos021800020001"
    assert len(names.interface_name(0x1FFFFF, "192.168.255.255")) == 15


def test_mac_is_locally_administered_unicast_and_injective_on_rfc1918() -> None:
    seen = {}
    for vni in (1, 2, 0x10000, 0x1FFFFF):
        for ip in ("10.0.0.1", "172.16.0.1", "192.168.0.1", "10.168.0.1", "172.31.0.1"):
            m = names.mac_bytes(vni, ip)
            assert m[0] & 0x02 and not m[0] & 0x01
            assert m not in seen, (vni, ip, seen.get(m))
            seen[m] = (vni, ip)


def test_lock_name_round_trip() -> None:
    assert names.lock_name(1752286, "10.1.2.3") == "v1-1752286-10-1-2-3"
    t = names.parse_lock_name("v1-1752286-10-1-2-3")
    assert t is not None and t.vni == 1752286 and t.ip == "10.1.2.3"


@pytest.mark.parametrize(
    "bad",
    [
        "v1-1-10-1-2",  # too few parts
        "v1-1-10-1-2-3-4",  # too many
        "v2-1-10-1-2-3",  # wrong version
        "v1-2097152-10-1-2-3",  # VNI over 21 bits
        "v1-1-10-1-2-256",  # octet over 8 bits
        "v1-01-10-1-2-3",  # non-canonical: would alias v1-1-10-1-2-3
        "v1-1-10-01-2-3",
        "v1-x-10-1-2-3",
        "v1--10-1-2-3",
        "v1-+1-10-1-2-3",
        "v1-1-10-1-2-٣",  # a non-ASCII digit
    ],
)
def test_malformed_lock_names_are_rejected(bad: str) -> None:
    assert names.parse_lock_name(bad) is None


def test_dns_names() -> None:
    assert names.dns1123_subdomain_problems("a.b-c.d") == []
    assert names.dns1123_subdomain_problems("Upper")
    assert names.dns1123_subdomain_problems("-lead")
    assert names.dns1123_subdomain_problems("x" * 254)
    assert names.dns1123_label_problems("ns-1") == []
    assert names.dns1123_label_problems("a.b")
    assert names.dns1123_label_problems("x" * 64)
