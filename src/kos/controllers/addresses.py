"""Which addresses of each virtual network are taken, and choosing a free one uniformly in O(log² n).

For each VNI the taken addresses are kept in a sorted list (IPAM's view, fed by
the IPLock informer and by its own picks). Choosing an address in a subnet's
range `[lo, hi]` draws k uniformly from the free addresses' count and finds the
k-th free address by binary search: the number of free addresses below the
taken address at index i of the range is `taken[i] - lo - i`, which never
decreases with i. So the choice is exactly uniform over free addresses (the
original picked a random gap, then a random address in it, which is not), and
its cost grows with log(addresses in use), not with the addresses in use.
"""

from __future__ import annotations

import random

from sortedcontainers import SortedList


class AddressSets:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._taken: dict[int, SortedList] = {}
        self._rng = rng or random.Random()

    def add(self, vni: int, address: int) -> bool:
        s = self._taken.get(vni)
        if s is None:
            s = self._taken[vni] = SortedList()
        if address in s:
            return False
        s.add(address)
        return True

    def discard(self, vni: int, address: int) -> None:
        s = self._taken.get(vni)
        if s is None:
            return
        s.discard(address)
        if not s:
            del self._taken[vni]

    def contains(self, vni: int, address: int) -> bool:
        s = self._taken.get(vni)
        return s is not None and address in s

    def count(self, vni: int) -> int:
        s = self._taken.get(vni)
        return len(s) if s is not None else 0

    def free_in(self, vni: int, lo: int, hi: int) -> int:
        s = self._taken.get(vni)
        used = 0 if s is None else s.bisect_right(hi) - s.bisect_left(lo)
        return hi - lo + 1 - used

    def pick(self, vni: int, lo: int, hi: int) -> int | None:
        """Take a uniformly chosen free address in [lo, hi] (and mark it taken), or None when there is none."""
        s = self._taken.get(vni)
        if s is None:
            s = self._taken[vni] = SortedList()
        start, end = s.bisect_left(lo), s.bisect_right(hi)
        free = hi - lo + 1 - (end - start)
        if free <= 0:
            return None
        k = self._rng.randrange(free)
        # find j = the number of taken addresses t_i (i in [start, end)) with t_i - lo - (i - start) <= k
        a, b = start, end
        while a < b:
            mid = (a + b) // 2
            if s[mid] - lo - (mid - start) <= k:
                a = mid + 1
            else:
                b = mid
        address: int = lo + k + (a - start)
        s.add(address)
        return address
