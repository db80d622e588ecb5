"""The workload's virtual networks: power-law sizes and their subnets (reference §7.2), as a pure plan.

VN i (0-based) has nominal size `ceil((1+bias)·top / (i+1+bias)^exponent)` (at
least 1) and VNI `(vni0 + i) & 0x1FFFFF`, where vni0 is one plus a random
multiple of 65536. Its slots are split over one subnet (`--single-network`) or
two (`<VNI>-a` gets the larger half), each the smallest power-of-two block that
holds its slots plus the three addresses IPAM never hands out, laid out one
after another from the base address (sizes never increase, so blocks stay
aligned). avgPeers = Σ size² / Σ size is the expected size of the VN of a slot
chosen uniformly: how many nodes an attachment's change reaches.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import random

MAX_VNI = (1 << 21) - 1


@dataclasses.dataclass(frozen=True, slots=True)
class SubnetPlan:
    name: str
    cidr: str
    slots: int


@dataclasses.dataclass(frozen=True, slots=True)
class NetworkPlan:
    index: int
    vni: int
    size: int
    subnets: tuple[SubnetPlan, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    networks: tuple[NetworkPlan, ...]
    num_slots: int
    avg_peers: float
    break_point: int
    """The first 1-based index whose size is 1 (0 when none is)."""

    def size_rows(self) -> list[tuple[int, int]]:
        return [(n.index + 1, n.size) for n in self.networks]

    def outline_rows(self) -> list[tuple[int, int]]:
        """Rows whose size differs from a neighbour's, plus the first and the last (size-distribution-outline.csv)."""
        rows = self.size_rows()
        out = []
        for i, (idx, size) in enumerate(rows):
            first, last = i == 0, i == len(rows) - 1
            if first or last or rows[i - 1][1] != size or rows[i + 1][1] != size:
                out.append((idx, size))
        return out


class PlanError(ValueError):
    pass


def sizes(num_nets: int, top_net_size: int, exponent: float, bias: int) -> list[int]:
    return [max(1, math.ceil((1 + bias) * top_net_size / (i + 1 + bias) ** exponent)) for i in range(num_nets)]


def plan(
    *,
    num_nets: int = 10,
    top_net_size: int = 100,
    exponent: float = 1.0,
    bias: int = 0,
    base_address: str = "172.24.0.0",
    single_network: bool = False,
    subnet_size_factor: float = 1.0,
    rng: random.Random | None = None,
    vni0: int | None = None,
) -> Plan:
    if num_nets < 1 or top_net_size < 1:
        raise PlanError("--num-nets and --top-net-size must be at least 1")
    if subnet_size_factor <= 0:
        raise PlanError("--subnet-size-factor must be positive")
    rng = rng or random.Random()
    if vni0 is None:
        vni0 = rng.randrange(32) * 65536 + 1
    try:
        next_addr = int(ipaddress.IPv4Address(base_address))
    except ValueError:
        raise PlanError(f"--base-address {base_address!r} is not an IPv4 address") from None
    networks = []
    szs = sizes(num_nets, top_net_size, exponent, bias)
    for i, sz in enumerate(szs):
        vni = (vni0 + i) & MAX_VNI
        n2 = 0 if single_network else sz // 2
        n1 = sz - n2
        bits = math.ceil(math.log2(n1 * subnet_size_factor + 3))
        block = 1 << bits
        next_addr = (next_addr + block - 1) // block * block  # keep every block aligned
        subnets = [SubnetPlan(f"{vni:06x}-a", f"{ipaddress.IPv4Address(next_addr)}/{32 - bits}", n1)]
        next_addr += block
        if n2 > 0:
            subnets.append(SubnetPlan(f"{vni:06x}-b", f"{ipaddress.IPv4Address(next_addr)}/{32 - bits}", n2))
            next_addr += block
        if next_addr > 1 << 32:
            raise PlanError("the address space runs out: use a lower --base-address or smaller networks")
        networks.append(NetworkPlan(i, vni, sz, tuple(subnets)))
    total = sum(szs)
    break_point = next((i + 1 for i, s in enumerate(szs) if s == 1), 0)
    return Plan(tuple(networks), total, sum(s * s for s in szs) / total, break_point)
