"""Names with meaning: object-name rules, the IPLock name (which *is* the address lock), MACs and interface names.

An IPLock's name is `v1-<VNI>-<a>-<b>-<c>-<d>`: creating the object takes the
address, because the store refuses a second object of the same name. The MAC of
an attachment's interface is a function of (VNI, IPv4) that is collision-free for
RFC 1918 addresses, and the Linux interface name is derived from the MAC
(reference §1.4 and §4.9).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import NamedTuple

MAX_VNI = (1 << 21) - 1

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def dns1123_label_problems(value: str) -> list[str]:
    """Why `value` is not a DNS-1123 label (namespaces), or [] when it is."""
    problems = []
    if len(value) > DNS1123_LABEL_MAX:
        problems.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1123_LABEL.match(value):
        problems.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start"
            " and end with an alphanumeric character (e.g. 'my-name',  or '123-abc')"
        )
    return problems


def dns1123_subdomain_problems(value: str) -> list[str]:
    """Why `value` is not a DNS-1123 subdomain (object names), or [] when it is."""
    problems = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        problems.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        problems.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and"
            " must start and end with an alphanumeric character (e.g. 'example.com')"
        )
    return problems


# --- IPLock names -------------------------------------------------------------------------------


class LockTarget(NamedTuple):
    vni: int
    address: int
    """The IPv4 address as an unsigned 32-bit integer."""

    @property
    def ip(self) -> str:
        return str(ipaddress.IPv4Address(self.address))


def lock_name(vni: int, ip: str | int) -> str:
    """The IPLock name for `ip` in virtual network `vni`, e.g. `v1-1752286-10-1-2-3`."""
    a, b, c, d = ipaddress.IPv4Address(ip).packed
    return f"v1-{vni}-{a}-{b}-{c}-{d}"


@functools.lru_cache(maxsize=1 << 16)
def parse_lock_name(name: str) -> LockTarget | None:
    """(VNI, address) from a lock name, or None when the name is not a canonical lock name."""
    parts = name.split("-")
    if len(parts) != 6 or parts[0] != "v1":
        return None
    nums = []
    for p in parts[1:]:
        if not p.isascii() or not p.isdigit() or (len(p) > 1 and p[0] == "0"):
            return None
        nums.append(int(p))
    vni, a, b, c, d = nums
    if vni > MAX_VNI or max(a, b, c, d) > 255:
        return None
    return LockTarget(vni, (a << 24) | (b << 16) | (c << 8) | d)


# --- MAC addresses and interface names ----------------------------------------------------------


def mac_bytes(vni: int, ip: str | int) -> bytes:
    a, b, c, d = ipaddress.IPv4Address(ip).packed
    return bytes([((vni >> 13) & 0xF8) | ((a & 0x02) << 1) | 0x02, b, c, d, (vni >> 8) & 0xFF, vni & 0xFF])


@functools.lru_cache(maxsize=1 << 16)
def mac_address(vni: int, ip: str | int) -> str:
    """The guest MAC for (VNI, IPv4), e.g. VNI 0x1abcde, 10.1.2.3 → `d6:01:02:03:bc:de`."""
    return ":".join(f"{x:02x}" for x in mac_bytes(vni, ip))


def interface_name(vni: int, ip: str | int) -> str:
    """The Linux interface name: `kos` + the MAC's 12 hex digits (15 characters, the Linux maximum)."""
    return "kos" + mac_bytes(vni, ip).hex()
