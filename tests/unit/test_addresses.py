"""Address choice: only free addresses, uniform over them, never more than the range holds."""

from __future__ import annotations

import collections
import random

from kos.controllers.addresses import AddressSets


def test_picks_every_free_address_exactly_once_until_full() -> None:
    a = AddressSets(random.Random(1))
    for x in (10, 12, 15):
        a.add(7, x)
    got = set()
    while (p := a.pick(7, 10, 20)) is not None:
        assert 10 <= p <= 20 and p not in got and p not in (10, 12, 15)
        got.add(p)
    assert got == set(range(10, 21)) - {10, 12, 15}
    assert a.free_in(7, 10, 20) == 0
    a.discard(7, 13)
    assert a.pick(7, 10, 20) == 13
    assert a.pick(8, 10, 20) is not None  # VNIs are independent


def test_addresses_outside_the_range_do_not_count() -> None:
    a = AddressSets(random.Random(2))
    for x in range(0, 100):
        a.add(1, x)
    for x in range(200, 300):
        a.add(1, x)
    assert a.free_in(1, 100, 199) == 100
    picks = {a.pick(1, 100, 199) for _ in range(100)}
    assert picks == set(range(100, 200))
    assert a.pick(1, 100, 199) is None


def test_choice_is_uniform_over_free_addresses() -> None:
    rng = random.Random(3)
    counts: collections.Counter[int] = collections.Counter()
    taken = [0, 1, 2, 5, 9, 10, 11, 12, 13, 19]
    for _ in range(20000):
        a = AddressSets(rng)
        for t in taken:
            a.add(1, t)
        p = a.pick(1, 0, 19)
        assert p is not None
        counts[p] += 1
    free = sorted(set(range(20)) - set(taken))
    assert sorted(counts) == free
    expected = 20000 / len(free)
    assert all(abs(c - expected) < 0.1 * expected for c in counts.values()), counts
