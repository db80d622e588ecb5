"""The one watch-event decoder: types, bookmarks, ERROR events, and the shared cache of `share_events`."""

from __future__ import annotations

import msgspec
import pytest

from kos.api.errors import Expired
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.client import watchevents
from kos.client.watchevents import EventDecoder
from kos.testing.listwatch import with_rv
from kos.testing.transport import bookmark, error_event, event


def na(name: str, rv: int) -> NetworkAttachment:
    return with_rv(NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns"),
                                     spec=NetworkAttachmentSpec(node="n1")), rv)  # fmt: skip


def decoder(shared: dict[bytes, watchevents.WatchEvent] | None = None) -> EventDecoder:
    return EventDecoder(msgspec.json.Decoder(NetworkAttachment), shared)


def test_events_bookmarks_and_errors() -> None:
    d = decoder()
    ev = d.decode(event("MODIFIED", na("a", 7)))
    assert (ev.type, ev.object.metadata.name, ev.resource_version) == ("MODIFIED", "a", "7")
    bm = d.decode(bookmark("9", initial_events_end=True))
    assert (bm.type, bm.object, bm.resource_version, bm.initial_events_end) == ("BOOKMARK", None, "9", True)
    with pytest.raises(Expired, match="too old"):
        d.decode(error_event(Expired("too old resource version: 1 (5)")))
    with pytest.raises(msgspec.ValidationError):
        d.decode(b'{"type":"ADDED","object":{"spec":3}}')
    assert d.received == 1  # object events only


def test_the_shared_cache_returns_one_event_per_line_and_keeps_the_newest() -> None:
    shared: dict[bytes, watchevents.WatchEvent] = {}
    a, b = decoder(shared), decoder(shared)
    line = event("ADDED", na("x", 1))
    assert a.decode(line) is b.decode(line)
    assert (a.received, b.received) == (1, 1)
    lines = [event("MODIFIED", na(f"n{i}", i + 2)) for i in range(watchevents.SHARED_EVENTS * 2)]
    for ln in lines:
        a.decode(ln)
        assert len(shared) <= watchevents.SHARED_EVENTS
    assert lines[-1] in shared and lines[-watchevents.SHARED_EVENTS * 3 // 4] in shared
    assert line not in shared and lines[0] not in shared
