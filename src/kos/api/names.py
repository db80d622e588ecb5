"""Names with meaning: object-name rules, the IPLock name (which *is* the address lock), MACs and interface names.

An IPLock's name is `v1-<VNI>-<a>-<b>-<c>-<d>`: creating the object takes the
address, because the store refuses a second object of the same name. The MAC of
an attachment's interface is a function of (VNI, IPv4) that is collision-free for
RFC 1918 addresses, and the Linux interface name is derived from the MAC
(reference §1.4 and §4.9).

The object-name, qualified-name and label-value rules are Kubernetes'
(k8s.io/apimachinery/pkg/util/validation). They judge untrusted input, so each
is a `fullmatch` (Python's `$` matches before a final newline: `"web1\n"` would
pass) of a pattern that cannot backtrack more than linearly.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import NamedTuple

MAX_VNI = (1 << 21) - 1

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63

# Each pattern is used with `fullmatch` only (`$` would accept a final newline). None can backtrack more
# than linearly, because no two quantifiers can match the same character: a DNS label has no '.', so each
# '.' of a subdomain ends one label and the engine never re-partitions labels (`([-a-z0-9_.]*[a-z0-9])?
# (\.…)*`, whose class includes '.', is exponential in the number of dots on a string that then fails).
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start"
    " and end with an alphanumeric character (e.g. 'my-name',  or '123-abc')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and"
    " must start and end with an alphanumeric character (e.g. 'example.com')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an"
    " alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', must start"
    " and end with an alphanumeric character, and be at most 63 characters"
)


def dns1123_label_problems(value: str) -> list[str]:
    """Why `value` is not a DNS-1123 label (namespaces), or [] when it is."""
    problems = []
    if len(value) > DNS1123_LABEL_MAX:
        problems.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if _DNS_LABEL.fullmatch(value) is None:
        problems.append(DNS1123_LABEL_MSG)
    return problems


def dns1123_subdomain_problems(value: str) -> list[str]:
    """Why `value` is not a DNS-1123 subdomain (object names), or [] when it is."""
    problems = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        problems.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if _DNS_SUBDOMAIN.fullmatch(value) is None:
        problems.append(DNS1123_SUBDOMAIN_MSG)
    return problems


def qualified_name_problems(value: str) -> list[str]:
    """Why `value` is not a qualified name (label and annotation keys, finalizers), or [] when it is.

    IsQualifiedName: an optional DNS-1123 subdomain prefix and '/', then a name of at most 63 characters
    of [A-Za-z0-9-_.] that starts and ends with an alphanumeric character.
    """
    prefix, sep, name = value.rpartition("/")
    if (
        len(name) <= QUALIFIED_NAME_MAX
        and _QUALIFIED.fullmatch(name) is not None
        and (not sep or (len(prefix) <= DNS1123_SUBDOMAIN_MAX and _DNS_SUBDOMAIN.fullmatch(prefix) is not None))
    ):
        return []  # the usual key, found valid without building messages
    problems = []
    if sep:
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problems += [f"prefix part {p}" for p in dns1123_subdomain_problems(prefix)]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        problems.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    elif _QUALIFIED.fullmatch(name) is None:
        problems.append(QUALIFIED_NAME_MSG)
    return problems


def is_label_value(value: str) -> bool:
    """IsValidLabelValue: empty, or at most 63 of [A-Za-z0-9-_.] with an alphanumeric character at both ends."""
    return not value or (len(value) <= LABEL_VALUE_MAX and _QUALIFIED.fullmatch(value) is not None)


# --- IPLock names -------------------------------------------------------------------------------


class LockTarget(NamedTuple):
    vni: int
    address: int
    """The IPv4 address as an unsigned 32-bit integer."""

    @property
    def ip(self) -> str:
        return str(ipaddress.IPv4Address(self.address))


@functools.lru_cache(maxsize=1 << 16)
def lock_name(vni: int, ip: str | int) -> str:
    """The IPLock name for `ip` in virtual network `vni`, e.g. `v1-1752286-10-1-2-3`."""
    a, b, c, d = ipaddress.IPv4Address(ip).packed
    return f"v1-{vni}-{a}-{b}-{c}-{d}"


_LOCK_NAME_MAX = len("v1-2097151-255-255-255-255")


@functools.lru_cache(maxsize=1 << 16)
def parse_lock_name(name: str) -> LockTarget | None:
    """(VNI, address) from a lock name, or None when the name is not a canonical lock name."""
    if len(name) > _LOCK_NAME_MAX:
        return None
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
