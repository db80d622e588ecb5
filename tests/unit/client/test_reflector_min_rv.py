"""`min_resource_version`: only the first list is "at least as new as"; every later one is consistent."""

from __future__ import annotations

import asyncio

from kos.api.errors import Expired, ServiceUnavailable
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.client.informer import Informer
from kos.client.rest import BOOKMARK, WatchEvent
from kos.testing.listwatch import ScriptedListWatch, added, with_rv


def na(name: str, rv: int) -> NetworkAttachment:
    return with_rv(NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns"), spec=NetworkAttachmentSpec()), rv)


async def run(lw: ScriptedListWatch, *, streaming: bool) -> Informer[NetworkAttachment]:
    inf: Informer[NetworkAttachment] = Informer(
        lw,  # type: ignore[arg-type]
        NetworkAttachment, streaming_list=streaming, min_resource_version="7",
    )  # fmt: skip
    inf.reflector.initial_backoff = inf.reflector.max_backoff = 0.001
    inf.start()
    await asyncio.wait_for(lw.exhausted.wait(), 5)
    await inf.stop()
    return inf


async def test_a_streaming_list_starts_at_the_revision_once_then_relists_consistently() -> None:
    lw = ScriptedListWatch()
    lw.set(na("a", 0))
    lw.step(added(na("b", 9)), then=Expired("too old"))  # 410 after the first stream: relist
    lw.step(added(na("c", 11)))
    inf = await run(lw, streaming=True)
    assert lw.watch_calls[:2] == ["stream@7", "stream"]
    assert sorted(o.metadata.name for o in inf.lister.list()) == ["a", "c"]  # the relist replaced b (not stored)


async def test_a_failed_first_stream_is_retried_as_a_consistent_one() -> None:
    lw = ScriptedListWatch()
    lw.stream_initial = False  # the script plays the server
    lw.step(then=ServiceUnavailable("connection refused"))  # the first stream fails before its initial state
    lw.step(added(na("b", 9)), WatchEvent(BOOKMARK, None, "9", initial_events_end=True))
    inf = await run(lw, streaming=True)
    assert lw.watch_calls[:2] == ["stream@7", "stream"]
    assert [o.metadata.name for o in inf.lister.list()] == ["b"]


async def test_a_list_starts_at_the_revision_once_then_relists_consistently() -> None:
    lw = ScriptedListWatch()
    lw.set(na("a", 0))
    lw.step(added(na("b", 9)), then=Expired("too old"))
    lw.step(added(na("c", 11)))
    await run(lw, streaming=False)
    assert lw.list_resource_versions[:2] == ["7", ""]
