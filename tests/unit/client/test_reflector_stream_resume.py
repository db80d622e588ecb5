"""A streaming list whose connection breaks after its initial state resumes from its last revision, not a relist.

Before, only a stream that ended normally counted as listed: one dropped watch-multiplexer connection made every
agent's local watch and every per-VNI watch list again (a consistent read each, and every object again).
"""

from __future__ import annotations

import asyncio

from kos.api.errors import ServiceUnavailable
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.client.informer import Informer
from kos.client.rest import BOOKMARK, WatchEvent
from kos.testing.listwatch import ScriptedListWatch, added, modified, with_rv


def na(name: str, node: str, rv: int) -> NetworkAttachment:
    return with_rv(
        NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns"), spec=NetworkAttachmentSpec(node=node)), rv
    )


async def test_a_stream_broken_after_its_initial_state_resumes_from_its_last_revision() -> None:
    lw = ScriptedListWatch()
    lw.stream_initial = False  # the script plays the server
    lw.step(added(na("a", "n1", 1)), WatchEvent(BOOKMARK, None, "2", initial_events_end=True),
            modified(na("a", "n2", 5)), then=ServiceUnavailable("connection reset by peer"))  # fmt: skip
    lw.step(modified(na("a", "n3", 7)))
    inf: Informer[NetworkAttachment] = Informer(lw, NetworkAttachment, streaming_list=True)  # type: ignore[arg-type]
    inf.reflector.initial_backoff = inf.reflector.max_backoff = 0.001
    inf.start()
    await asyncio.wait_for(lw.exhausted.wait(), 5)
    await inf.stop()
    assert lw.watch_calls[:2] == ["stream", "5"]  # resumed after the last event it had, no second stream
    assert inf.reflector.relists == 1
    a = inf.lister.get("ns", "a")
    assert a is not None and a.spec.node == "n3"
