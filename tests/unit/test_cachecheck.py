"""The cache-against-store check every in-process apiserver of the tests runs at teardown finds what differs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kos.api import codec
from kos.api.meta import ObjectMeta
from kos.api.resources import NETWORK_ATTACHMENTS
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.apiserver.cache import Cacher
from kos.storage.memory import MemoryStore
from kos.testing.cachecheck import assert_cache_matches_store

NA = NETWORK_ATTACHMENTS.plural


def na(name: str, node: str) -> bytes:
    obj = NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns", uid=name),
                            spec=NetworkAttachmentSpec(node=node, subnet="s"))  # fmt: skip
    return codec.encode(obj)


@pytest.fixture
async def cacher() -> AsyncIterator[Cacher]:
    store = MemoryStore()
    c = Cacher(store, history=100)
    await c.start()
    r1 = await store.create(f"/{NA}/ns/a", na("a", "n1"))
    await store.update(f"/{NA}/ns/a", na("a", "n2"), r1)
    await store.create(f"/{NA}/ns/b", na("b", "n1"))
    await store.delete(f"/{NA}/ns/b")
    await c.sync()
    yield c
    await c.stop()


async def test_a_cache_that_matches_its_store_passes(cacher: Cacher) -> None:
    await assert_cache_matches_store(cacher)


async def test_an_entry_that_differs_from_the_store_is_found(cacher: Cacher) -> None:
    cache = cacher.caches[NA]
    e = cache.items["ns/a"]
    cache.items["ns/a"] = cache.make_entry("ns/a", na("a", "elsewhere"), e.rev)
    with pytest.raises(AssertionError, match="ns/a"):
        await assert_cache_matches_store(cacher)


async def test_an_event_whose_content_differs_from_the_stores_log_is_found(cacher: Cacher) -> None:
    cache = cacher.caches[NA]
    first = cache.history[0]
    first.cur = cache.make_entry(first.cur.key, na("a", "elsewhere"), first.rev)
    with pytest.raises(AssertionError, match=f"event at {first.rev}"):
        await assert_cache_matches_store(cacher)


async def test_an_object_missing_from_the_cache_is_found(cacher: Cacher) -> None:
    del cacher.caches[NA].items["ns/a"]
    with pytest.raises(AssertionError, match="not in the cache"):
        await assert_cache_matches_store(cacher)
