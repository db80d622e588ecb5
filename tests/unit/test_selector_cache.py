"""The parsed-selector cache is bounded by bytes, and huge selectors are never kept (issue 10, item 4).

It was bounded by count (65,536 entries), so 1,500 distinct 7 KB label
selectors held ~150 MB after their requests were answered.
"""

from __future__ import annotations

import gc
import os

import pytest

from kos.api.errors import BadRequest
from kos.api.resources import NETWORK_ATTACHMENTS
from kos.apiserver import params
from kos.apiserver.params import SelectorCache


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def big_selector(i: int) -> str:
    return ",".join(f"k{j}-{i}=v{j}" for j in range(700))[:7000].rsplit(",", 1)[0]


def test_distinct_7kb_label_selectors_leave_nothing_behind() -> None:
    gc.collect()
    before = rss()
    for i in range(1500):
        ls, _ = params.selectors({"labelSelector": big_selector(i)}, NETWORK_ATTACHMENTS)
        assert len(ls.requirements) > 400
    del ls
    gc.collect()
    grew = rss() - before
    assert grew < 40 << 20, f"1,500 distinct 7 KB selectors left {grew >> 20} MiB behind"


def test_repeated_small_selectors_are_parsed_once() -> None:
    cache = SelectorCache()
    a = cache.parse("app=web", "spec.node=n1,status.ipv4!=")
    b = cache.parse("app=web", "spec.node=n1,status.ipv4!=")
    assert a is b and len(cache) == 1
    big = big_selector(0)
    assert cache.parse(big, "") is not cache.parse(big, "")  # not kept: nobody repeats those
    assert len(cache) == 1


def test_the_cache_holds_at_most_its_budget_and_drops_the_least_recently_used() -> None:
    cache = SelectorCache(max_bytes=1 << 20)
    first = cache.parse("", "spec.node=node-0,status.ipv4!=")
    for i in range(1, 20_000):
        cache.parse("", f"status.addressVNI={i % 100},spec.node!=node-{i},status.ipv4!=,status.hostIP!=")
        cache.parse("", "spec.node=node-0,status.ipv4!=")  # used again and again: stays
        assert cache.bytes <= cache.max_bytes
    assert 100 < len(cache) < 20_000
    assert cache.parse("", "spec.node=node-0,status.ipv4!=") is first
    assert cache.parse("", "status.addressVNI=1,spec.node!=node-1,status.ipv4!=,status.hostIP!=") is not None
    cache.clear()
    assert (len(cache), cache.bytes) == (0, 0)


def test_errors_are_not_cached() -> None:
    cache = SelectorCache()
    for _ in range(2):
        with pytest.raises(BadRequest):
            cache.parse("a in (", "")
    assert len(cache) == 0 and cache.bytes == 0
