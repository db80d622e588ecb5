"""Multiplexed watches: many watches over one WebSocket, with the semantics of HTTP watches.

The server runs on a fake clock: a watch's timeoutSeconds passes when a test advances it, after the test has
seen the events it expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kos.api.errors import Expired
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.apiserver.server import APIServer
from kos.client.informer import Informer
from kos.client.rest import Client, WatchEvent
from kos.testing.apiserver import running_apiserver
from kos.testing.clock import FakeClock
from kos.testing.wait import eventually


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[APIServer]:
    async with running_apiserver(watch_cache_size=100, bookmark_interval=0.2, clock=clock) as s:
        yield s


async def watching(server: APIServer, n: int) -> None:
    """Wait until the server holds `n` NetworkAttachment watches."""
    gauge = server.metrics.watchers.labels("networkattachments")
    await eventually(lambda: gauge._value.get() == n, timeout=10)


def na(name: str, node: str) -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace="ns"), spec=NetworkAttachmentSpec(node=node, subnet="s")
    )


async def collect(c: Client, out: list[WatchEvent], **kw: object) -> None:
    async for ev in c.watch(NetworkAttachment, **kw):  # type: ignore[arg-type]
        out.append(ev)


async def test_many_watches_share_one_connection_with_their_own_selectors(server: APIServer, clock: FakeClock) -> None:
    async with Client(server.url, watch_mux=True) as mux, Client(server.url) as plain:
        await plain.create(na("a0", "n0"))
        results: dict[int, list[WatchEvent]] = {i: [] for i in range(50)}
        tasks = [asyncio.create_task(collect(mux, results[i], resource_version="0", field_selector=f"spec.node=n{i % 5}",
                                             timeout_seconds=3)) for i in range(50)]  # fmt: skip
        await watching(server, 50)
        for i in range(1, 10):
            await plain.create(na(f"a{i}", f"n{i % 5}"))
        await plain.delete(NetworkAttachment, "ns", "a3")
        for k in range(5):  # a barrier: a watch that has its node's "end" has everything written before it
            await plain.create(na(f"end{k}", f"n{k}"))

        def names(i: int) -> list[tuple[str, str]]:
            return [(e.type, e.object.metadata.name) for e in results[i] if e.type != "BOOKMARK"]

        def want(i: int) -> list[tuple[str, str]]:
            mine = [f"a{j}" for j in range(10) if j % 5 == i % 5]
            return [("ADDED", n) for n in mine] + ([("DELETED", "a3")] if i % 5 == 3 else [])

        await eventually(lambda: all(names(i)[-1:] == [("ADDED", f"end{i % 5}")] for i in results), timeout=10)
        await clock.advance(3)
        await asyncio.gather(*tasks)  # each ends when its timeout passes, as an HTTP watch does
        for i in results:
            assert names(i) == [*want(i), ("ADDED", f"end{i % 5}")], (i, names(i))
        assert server.metrics.watchers.labels("networkattachments")._value.get() == 0


async def test_resume_gone_and_bookmarks(server: APIServer, clock: FakeClock) -> None:
    async with Client(server.url, watch_mux=True) as mux, Client(server.url) as plain:
        first = await plain.create(na("a", "n"))
        for i in range(3):
            await plain.patch(NetworkAttachment, "ns", "a", {"metadata": {"labels": {"i": str(i)}}})
        evs: list[WatchEvent] = []
        task = asyncio.create_task(collect(mux, evs, resource_version=first.metadata.resource_version,
                                           timeout_seconds=1))  # fmt: skip
        await eventually(lambda: len(evs) == 3, timeout=10)
        await watching(server, 1)
        await clock.advance(1)
        await asyncio.wait_for(task, 10)  # the stream ended at its timeout
        assert [e.object.metadata.labels["i"] for e in evs if e.type == "MODIFIED"] == ["0", "1", "2"]
        for i in range(250):
            await plain.patch(NetworkAttachment, "ns", "a", {"metadata": {"labels": {"i": f"x{i}"}}})
        with pytest.raises(Expired):
            await collect(mux, [], resource_version=first.metadata.resource_version, timeout_seconds=1)


async def test_cancelled_watches_stop_on_the_server(server: APIServer) -> None:
    async with Client(server.url, watch_mux=True) as mux:
        tasks = [asyncio.create_task(collect(mux, [], resource_version="0")) for _ in range(10)]
        await watching(server, 10)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await watching(server, 0)


@pytest.mark.parametrize("mux", [True, False], ids=["mux", "http"])
async def test_streaming_list_informer_against_the_server(server: APIServer, mux: bool) -> None:
    async with Client(server.url, watch_mux=mux) as c:
        for i in range(3):
            await c.create(na(f"s{i}", "n1" if i < 2 else "n2"))
        inf: Informer[NetworkAttachment] = Informer(c, NetworkAttachment, field_selector="spec.node=n1",
                                                    streaming_list=True)  # fmt: skip
        inf.start()
        await asyncio.wait_for(inf.reflector.synced.wait(), 5)
        assert sorted(o.metadata.name for o in inf.lister.list()) == ["s0", "s1"]
        assert c.list_objects_received == 0  # no list request: the watch carried the state
        await c.create(na("s3", "n1"))
        await c.delete(NetworkAttachment, "ns", "s0")
        await eventually(lambda: sorted(o.metadata.name for o in inf.lister.list()) == ["s1", "s3"], timeout=4)
        await inf.stop()


@pytest.mark.parametrize("share", [True, False])
async def test_a_sharing_client_decodes_an_event_line_once_for_all_its_watches(server: APIServer, share: bool) -> None:
    """`share_events` (simnodes: 100 nodes' watches in one client) hands every watch that receives the same event
    line the same decoded object; each watch still gets its own event, and each is counted."""
    async with Client(server.url, watch_mux=True, share_events=share) as c, Client(server.url) as writer:
        _, rv = await c.list(NetworkAttachment, "ns")
        seen: list[list[WatchEvent]] = [[], [], []]
        tasks = [asyncio.create_task(collect(c, seen[i], namespace="ns", resource_version=rv,
                                             field_selector="spec.node=n1")) for i in range(2)]  # fmt: skip
        tasks.append(asyncio.create_task(collect(c, seen[2], namespace="ns", resource_version=rv)))
        await watching(server, 3)
        await writer.create(na("x", "n1"))
        await writer.create(na("y", "n2"))
        try:
            await eventually(lambda: len(seen[0]) == len(seen[1]) == 1 and len(seen[2]) == 2, timeout=5)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        a, b, (c0, c1) = seen[0][0], seen[1][0], seen[2]
        assert a.object == b.object == c0.object and a.object.metadata.name == "x" and c1.object.metadata.name == "y"
        assert (a.object is b.object is c0.object) == share  # the same line: one decode when sharing, one each if not
        assert c.watch_events_received == 4
