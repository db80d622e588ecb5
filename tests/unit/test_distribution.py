"""The workload plan: power-law sizes, avgPeers, subnets (reference §7.2)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from kos.api import cidr
from kos.driver import distribution


def test_default_sizes_and_avg_peers() -> None:
    p = distribution.plan(rng=random.Random(1))
    assert [n.size for n in p.networks] == [100, 50, 34, 25, 20, 17, 15, 13, 12, 10]
    assert p.num_slots == 296
    assert p.avg_peers == pytest.approx(sum(s * s for s in (100, 50, 34, 25, 20, 17, 15, 13, 12, 10)) / 296)
    assert p.break_point == 0


def test_many_small_networks_and_break_point() -> None:
    p = distribution.plan(num_nets=100, top_net_size=10, rng=random.Random(1))
    assert p.networks[0].size == 10 and p.networks[-1].size == 1
    assert p.break_point == 10  # ceil(10/10) == 1
    assert p.num_slots == 123 and p.avg_peers == pytest.approx(261 / 123)


def test_subnets_hold_their_slots_are_aligned_rfc1918_and_disjoint() -> None:
    p = distribution.plan(num_nets=30, top_net_size=200, exponent=0.8, bias=2, rng=random.Random(2))
    blocks = []
    for n in p.networks:
        assert sum(s.slots for s in n.subnets) == n.size
        assert [s.name for s in n.subnets] == [f"{n.vni:06x}-a", f"{n.vni:06x}-b"][: len(n.subnets)]
        for s in n.subnets:
            b = cidr.parse_block(s.cidr)  # no host bits: aligned
            lo, hi = b.assignable()
            assert hi - lo + 1 >= s.slots
            assert cidr.is_rfc1918(b)
            blocks.append(b)
    for i, a in enumerate(blocks):
        for b in blocks[i + 1 :]:
            assert not a.overlaps(b)


def test_vnis_are_consecutive_from_one_plus_a_multiple_of_65536() -> None:
    p = distribution.plan(num_nets=5, rng=random.Random(3))
    v0 = p.networks[0].vni
    assert (v0 - 1) % 65536 == 0 and [n.vni for n in p.networks] == [v0 + i for i in range(5)]


def test_single_network_and_outline() -> None:
    p = distribution.plan(num_nets=20, top_net_size=4, single_network=True, rng=random.Random(4))
    assert all(len(n.subnets) == 1 for n in p.networks)
    rows = p.outline_rows()
    assert rows[0] == (1, 4) and rows[-1] == (20, 1)
    assert all(r in p.size_rows() for r in rows)
    assert ipaddress.IPv4Network(p.networks[0].subnets[0].cidr).network_address == ipaddress.IPv4Address("172.24.0.0")
