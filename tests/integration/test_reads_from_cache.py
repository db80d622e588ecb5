"""Reads at a revision the client saw are served from the watch cache: no store read (an etcd `Range`).

A list with a resourceVersion (Kubernetes: not older than it) and a streaming list (`sendInitialEvents` with
`resourceVersionMatch=NotOlderThan` and a resourceVersion), over plain HTTP and over the watch multiplexer, make
no `current_revision` call when the cache has that revision; without a resourceVersion they are consistent
reads, one call each. Counted with the apiserver's own `kos_storage_request_duration_seconds`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import Subnet, SubnetSpec
from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.client.watchevents import BOOKMARK


def revision_reads(server: APIServer) -> float:
    v = server.metrics.registry.get_sample_value(
        "kos_storage_request_duration_seconds_count", {"operation": "current_revision", "type": "*"}
    )
    return v or 0.0


@pytest.fixture
async def quiet(server: APIServer) -> AsyncIterator[APIServer]:
    """The server without its readiness probe's periodic revision reads."""
    assert server.readiness is not None
    await server.readiness.stop()
    yield server


async def streamed(client: Client, rv: str) -> list[str]:
    """Names in a streaming list at `rv`, up to its initial-events-end bookmark."""
    names: list[str] = []
    async for ev in client.watch(Subnet, "rc", resource_version=rv, send_initial_events=True, timeout_seconds=5):
        if ev.type == BOOKMARK and ev.initial_events_end:
            return names
        names.append(ev.object.metadata.name)
    raise AssertionError("the stream ended before its initial state did")


@pytest.mark.parametrize("mux", [False, True], ids=["http", "watchmux"])
async def test_reads_at_a_seen_revision_read_no_store_revision(quiet: APIServer, mux: bool) -> None:
    server = quiet
    async with Client(server.url, watch_mux=mux) as client:
        sn = await client.create(Subnet(metadata=ObjectMeta(name="s1", namespace="rc"),
                                        spec=SubnetSpec(vni=7, ipv4="10.7.0.0/24")))  # fmt: skip
        seen = sn.metadata.resource_version
        assert server.cacher is not None
        await server.cacher.wait_for(int(seen))
        before = revision_reads(server)
        items, _ = await client.list(Subnet, "rc", resource_version=seen)
        assert [o.metadata.name for o in items] == ["s1"]
        assert await asyncio.wait_for(streamed(client, seen), 10) == ["s1"]
        assert revision_reads(server) == before
        await client.list(Subnet, "rc")  # consistent: one revision read
        assert await asyncio.wait_for(streamed(client, ""), 10) == ["s1"]  # consistent: one more
        assert revision_reads(server) == before + 2
