"""kos.chaos.streams: the recorder writes what the reflector's list/watch loop saw — a relist, events and
bookmarks, a break and its resume from the last revision, a 410 and its relist — and stops when told."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kos.api.errors import Expired, ServiceUnavailable
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.chaos.history import History, StreamError, StreamStart, WatchEvent
from kos.chaos.streams import record_stream
from kos.testing.clock import FakeClock
from kos.testing.listwatch import ScriptedListWatch, added, bookmark, deleted, modified, with_rv


def na(name: str, rv: int) -> NetworkAttachment:
    o = NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns"), spec=NetworkAttachmentSpec(node="n1"))
    out: NetworkAttachment = with_rv(o, rv)
    return out


async def test_segments_resume_and_relist_are_recorded(tmp_path: Path) -> None:
    lw = ScriptedListWatch()
    lw.list_results = [([na("a", 1), na("b", 2)], 2), ([na("a", 3), na("c", 6)], 6)]
    lw.step(modified(na("a", 3)), bookmark(4), then=ServiceUnavailable("connection reset"))
    lw.step(deleted(na("b", 5)), then=Expired("too old"))
    lw.step(added(na("d", 7)))
    lw.step()  # the server ends this watch (its timeout) with nothing to send
    stop = asyncio.Event()
    with History(tmp_path / "h.jsonl", FakeClock()) as h:
        task = asyncio.create_task(record_stream(lw, h, NetworkAttachment, namespace="ns", stop=stop))
        await asyncio.wait_for(lw.exhausted.wait(), 10)
        stop.set()
        stream = await asyncio.wait_for(task, 10)
    got: list[tuple[object, ...]] = []
    for r in h.records:
        assert getattr(r, "stream", None) == stream
        if isinstance(r, StreamStart):
            assert (r.resource, r.namespace) == ("networkattachments", "ns")
            got.append(("start", r.relist, r.resource_version, r.objects))
        elif isinstance(r, WatchEvent):
            got.append((r.type, r.name, r.resource_version))
        elif isinstance(r, StreamError):
            got.append(("error", r.error.split(":")[0]))
    assert got == [
        ("start", True, 2, [("ns", "a", 1), ("ns", "b", 2)]),
        ("MODIFIED", "a", 3),
        ("BOOKMARK", "", 4),
        ("error", "ServiceUnavailable"),
        ("start", False, 4, []),  # resumed from the bookmark's revision, not relisted
        ("DELETED", "b", 5),
        ("error", "Expired"),
        ("start", True, 6, [("ns", "a", 3), ("ns", "c", 6)]),  # 410: relisted
        ("ADDED", "d", 7),
        ("start", False, 7, []),  # the server ended the watch (no error): resumed from the last event
    ]  # the next resume, still waiting for its first event when stopped, is not recorded
    assert lw.watch_calls == ["2", "4", "6", "7", "7"]
