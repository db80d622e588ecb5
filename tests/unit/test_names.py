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


# --- Kubernetes' name rules on untrusted input: fullmatch, linear time --------------------------------
# Tables from k8s.io/apimachinery/pkg/util/validation (IsDNS1123Label, IsDNS1123Subdomain, IsQualifiedName,
# IsValidLabelValue). Every "...\n" row passed once: Python's `$` matches before a final newline.

BACKTRACKING = "a" + ".a" * 22 + "-"  # took 1.2 s as a selector key, doubling with each ".a"


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a", True), ("a-b", True), ("0", True), ("x" * 63, True), ("x" * 64, False), ("", False), ("-a", False),
     ("a-", False), ("A", False), ("a.b", False), ("a_b", False), ("bug06\n", False), ("a\n", False),
     ("\na", False), ("a\x00", False), ("é", False)],
)  # fmt: skip
def test_dns1123_label(value: str, ok: bool) -> None:
    assert (names.dns1123_label_problems(value) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a", True), ("web1", True), ("a.b-c.d", True), ("a" * 253, True), ("a." * 126 + "a", True),
     ("a" * 254, False), ("web1\n", False), ("node-1\n", False), ("s\n", False), ("a..b", False), (".a", False),
     ("a.", False), ("a.-b", False), ("a-.b", False), ("UPPER", False), ("", False), (BACKTRACKING, False),
     ("a." * 300_000 + "-", False)],
)  # fmt: skip
def test_dns1123_subdomain(value: str, ok: bool) -> None:
    assert (names.dns1123_subdomain_problems(value) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("app", True), ("App_1.x-y", True), ("example.com/app", True), ("a/b", True), ("x" * 63, True),
     ("x" * 64, False), ("k\n", False), ("example.com/k\n", False), ("example.com\n/k", False), ("/k", False),
     ("example.com/", False), ("Example.com/k", False), ("a/b/c", False), ("-k", False), ("k.", False),
     (BACKTRACKING, False), (BACKTRACKING + "/k", False), ("a" + ".a" * 2000 + "-/k", False)],
)  # fmt: skip
def test_qualified_name(value: str, ok: bool) -> None:
    assert (names.qualified_name_problems(value) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("", True), ("v", True), ("V_1.x-y", True), ("x" * 63, True), ("x" * 64, False), ("v\n", False),
     ("\nv", False), ("-v", False), ("v.", False), ("v v", False), ("v/w", False), (BACKTRACKING, False)],
)  # fmt: skip
def test_label_value(value: str, ok: bool) -> None:
    assert names.is_label_value(value) is ok


def test_lock_names_of_many_digits_are_refused_not_raised() -> None:
    assert names.parse_lock_name("v1-1-10-1-2-" + "9" * 5000) is None
    assert names.parse_lock_name("v1-" + "1" * 4400 + "-10-1-2-3") is None
