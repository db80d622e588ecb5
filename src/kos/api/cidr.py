"""IPv4 blocks as integer ranges: parsing `spec.ipv4`, RFC 1918 containment and overlap.

Subnets are compared and carved as `[base, last]` ranges of unsigned 32-bit
integers, which makes overlap a two-comparison test and address choice integer
arithmetic (reference §2.4).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import NamedTuple

PRIVATE_BLOCKS = (
    (0x0A000000, 0x0AFFFFFF),  # 10.0.0.0/8
    (0xAC100000, 0xAC1FFFFF),  # 172.16.0.0/12
    (0xC0A80000, 0xC0A8FFFF),  # 192.168.0.0/16
)


class Block(NamedTuple):
    base: int
    last: int
    prefix: int

    def overlaps(self, other: Block) -> bool:
        return self.base <= other.last and self.last >= other.base

    def contains(self, address: int) -> bool:
        return self.base <= address <= self.last

    @property
    def size(self) -> int:
        return self.last - self.base + 1

    def assignable(self) -> tuple[int, int]:
        """The range IPAM hands out: /29 and larger skip network, gateway and broadcast; /30–/32 use all."""
        if self.last - self.base >= 4:
            return self.base + 2, self.last - 1
        return self.base, self.last

    def __str__(self) -> str:
        return f"{ipaddress.IPv4Address(self.base)}/{self.prefix}"


class CIDRError(ValueError):
    pass


@functools.lru_cache(maxsize=4096)
def parse_block(cidr: str) -> Block:
    """Parse an IPv4 CIDR with no host bits set; raises CIDRError with a message a person can act on."""
    if "/" not in cidr:
        raise CIDRError("must be an IPv4 CIDR block such as 10.0.0.0/24 (the prefix length is missing)")
    addr, _, plen = cidr.partition("/")
    try:
        ip = ipaddress.IPv4Address(addr)
    except ValueError:
        try:
            ipaddress.IPv6Network(cidr, strict=False)
        except ValueError:
            raise CIDRError("must be an IPv4 CIDR block such as 10.0.0.0/24") from None
        raise CIDRError("must be an IPv4 CIDR block; IPv6 is not supported") from None
    # length first: int() of thousands of digits raises ValueError (Python's int-string conversion limit)
    if (
        not 1 <= len(plen) <= 2
        or not plen.isascii()
        or not plen.isdigit()
        or int(plen) > 32
        or (plen[0] == "0" and plen != "0")
    ):
        raise CIDRError("must be an IPv4 CIDR block such as 10.0.0.0/24 (the prefix length must be 0 to 32)")
    prefix = int(plen)
    net = ipaddress.IPv4Network(f"{ip}/{prefix}", strict=False)
    if net.network_address != ip:
        raise CIDRError(f"has host bits set; did you mean {net}?")
    base = int(net.network_address)
    return Block(base, base + net.num_addresses - 1, prefix)


def is_rfc1918(block: Block) -> bool:
    return any(lo <= block.base and block.last <= hi for lo, hi in PRIVATE_BLOCKS)


def ip_to_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


def int_to_ip(address: int) -> str:
    return str(ipaddress.IPv4Address(address))
