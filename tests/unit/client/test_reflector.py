"""Reflector edge cases: bookmarks, disconnects, 410 mid-watch, objects deleted while disconnected."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from kos.api import errors
from kos.api.errors import Expired, ServiceUnavailable, StatusError, Timeout
from kos.api.meta import ObjectMeta, Status
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.client.informer import Informer
from kos.client.rest import BOOKMARK, WatchEvent
from kos.testing.listwatch import ScriptedListWatch, added, bookmark, deleted, modified, with_rv


def na(name: str, node: str = "n1", rv: int = 0) -> NetworkAttachment:
    o = NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns"), spec=NetworkAttachmentSpec(node=node))
    return with_rv(o, rv) if rv else o


class Recorder:
    def __init__(self, inf: Informer[Any]) -> None:
        self.events: list[tuple[str, str, str]] = []
        inf.add_handlers(
            on_add=lambda o: self.events.append(("add", o.metadata.name, o.spec.node)),
            on_update=lambda old, new: self.events.append(("update", new.metadata.name, new.spec.node)),
            on_delete=lambda o: self.events.append(("delete", o.metadata.name, o.spec.node)),
        )


def informer(lw: ScriptedListWatch) -> tuple[Informer[NetworkAttachment], Recorder]:
    inf: Informer[NetworkAttachment] = Informer(lw, NetworkAttachment)  # type: ignore[arg-type]
    inf.reflector.max_backoff = 0.01
    return inf, Recorder(inf)


async def run_until_exhausted(lw: ScriptedListWatch, inf: Informer[Any]) -> None:
    inf.start()
    await asyncio.wait_for(lw.exhausted.wait(), 5)
    await inf.stop()


async def test_list_then_watch_and_resource_versions() -> None:
    lw = ScriptedListWatch()
    lw.list_results = [([na("a", rv=1), na("b", rv=2)], 2)]
    lw.step(modified(na("a", "n2", rv=3)), deleted(na("b", rv=4)), added(na("c", rv=5)))
    inf, rec = informer(lw)
    assert not inf.has_synced()
    await run_until_exhausted(lw, inf)
    assert inf.has_synced()
    assert rec.events == [("add", "a", "n1"), ("add", "b", "n1"), ("update", "a", "n2"), ("delete", "b", "n1"),
                          ("add", "c", "n1")]  # fmt: skip
    assert sorted(o.metadata.name for o in inf.lister.list()) == ["a", "c"]
    a = inf.lister.get("ns", "a")
    assert a is not None and a.spec.node == "n2"
    assert lw.watch_calls == ["2", "5"]  # resumed from the last event's revision


async def test_bookmark_moves_the_resume_point() -> None:
    lw = ScriptedListWatch()
    lw.list_results = [([na("a", rv=1)], 1)]
    lw.step(bookmark(40))  # and then the stream ends normally (a server timeout)
    inf, _ = informer(lw)
    await run_until_exhausted(lw, inf)
    assert lw.watch_calls == ["1", "40"]
    assert lw.list_calls == 1


async def test_disconnect_resumes_from_last_seen_revision_without_relisting() -> None:
    lw = ScriptedListWatch()
    lw.list_results = [([na("a", rv=1)], 1)]
    lw.step(added(na("b", rv=2)), then=ServiceUnavailable("connection reset by peer"))
    lw.step(added(na("c", rv=3)))
    inf, rec = informer(lw)
    await run_until_exhausted(lw, inf)
    assert lw.list_calls == 1
    assert lw.watch_calls == ["1", "2", "3"]
    assert [e[:2] for e in rec.events] == [("add", "a"), ("add", "b"), ("add", "c")]


async def test_gone_mid_watch_relists_and_reports_what_changed_meanwhile() -> None:
    lw = ScriptedListWatch()
    lw.list_results = [
        ([na("a", rv=1), na("b", rv=2), na("c", rv=3)], 3),
        # the second list, after the 410: b was deleted, c changed, d created while we were away
        ([na("a", "n2", rv=4), na("c", "n3", rv=6), na("d", rv=7)], 7),
    ]
    lw.step(modified(na("a", "n2", rv=4)), then=Expired("too old resource version: 4 (90)"))
    inf, rec = informer(lw)
    await run_until_exhausted(lw, inf)
    assert lw.list_calls == 2
    assert rec.events == [
        ("add", "a", "n1"), ("add", "b", "n1"), ("add", "c", "n1"),  # the first list
        ("update", "a", "n2"),  # the watch
        ("delete", "b", "n1"), ("update", "c", "n3"), ("add", "d", "n1"),  # the relist reports the differences
    ]  # fmt: skip
    assert lw.watch_calls == ["3", "7"]
    assert sorted((o.metadata.name, o.spec.node) for o in inf.lister.list()) == [("a", "n2"), ("c", "n3"), ("d", "n1")]


async def test_too_large_resource_version_relists_from_the_current_state() -> None:
    """kubernetes #91073: the server restarted on a fresh store, at a revision below ours.

    Watching from our revision gets 504 with the cause ResourceVersionTooLarge; retrying it would
    wait forever, so the reflector lists again (consistent) and reports what the new store holds.
    """
    lw = ScriptedListWatch()
    lw.list_results = [
        ([na("a", rv=30), na("b", rv=40)], 40),
        ([na("x", rv=1), na("a", "n9", rv=2)], 2),  # the fresh store: b is gone, a was re-created
    ]
    too_large = errors.too_large_resource_version(40, 2)
    # the cause survives the wire: what a client decodes from the Status is recognised too
    over_the_wire = StatusError.from_status(
        msgspec.json.decode(msgspec.json.encode(too_large.to_status()), type=Status)
    )
    lw.step(then=over_the_wire)
    inf, rec = informer(lw)
    await run_until_exhausted(lw, inf)
    assert lw.list_calls == 2
    assert lw.watch_calls == ["40", "2"]
    assert inf.reflector.too_large_relists == 1
    assert rec.events[2:] == [("delete", "b", "n1"), ("add", "x", "n1"), ("update", "a", "n9")]
    assert sorted(o.metadata.name for o in inf.lister.list()) == ["a", "x"]


async def test_a_timeout_without_the_cause_retries_the_same_revision() -> None:
    lw = ScriptedListWatch()
    lw.list_results = [([na("a", rv=5)], 5)]
    lw.step(then=Timeout("timed out waiting for the watch cache"))
    inf, _ = informer(lw)
    await run_until_exhausted(lw, inf)
    assert lw.list_calls == 1 and lw.watch_calls == ["5", "5"]


async def test_unchanged_objects_are_not_reported_again_after_a_relist() -> None:
    lw = ScriptedListWatch()
    lw.list_results = [([na("a", rv=1)], 1), ([na("a", rv=1)], 5)]
    lw.step(then=Expired("gone"))
    inf, rec = informer(lw)
    await run_until_exhausted(lw, inf)
    assert rec.events == [("add", "a", "n1")]


async def test_indexes_follow_changes() -> None:
    lw = ScriptedListWatch()
    lw.list_results = [([na("a", "n1", rv=1), na("b", "n1", rv=2)], 2)]
    lw.step(modified(na("a", "n2", rv=3)), deleted(na("b", rv=4)))
    inf: Informer[NetworkAttachment] = Informer(
        lw,  # type: ignore[arg-type]
        NetworkAttachment,
        indexers={"node": lambda o: [o.spec.node]},
    )
    await run_until_exhausted(lw, inf)
    assert [o.metadata.name for o in inf.lister.by_index("node", "n2")] == ["a"]
    assert inf.lister.by_index("node", "n1") == []


def streaming(lw: ScriptedListWatch) -> tuple[Informer[NetworkAttachment], Recorder]:
    inf: Informer[NetworkAttachment] = Informer(lw, NetworkAttachment, streaming_list=True)  # type: ignore[arg-type]
    inf.reflector.max_backoff = 0.01
    return inf, Recorder(inf)


async def test_streaming_list_is_one_request_then_follows_the_stream() -> None:
    lw = ScriptedListWatch()
    lw.set(na("a"))
    b = lw.set(na("b"))
    lw.step(modified(with_rv(msgspec.structs.replace(b, spec=NetworkAttachmentSpec(node="n2")), 3)))
    inf, rec = streaming(lw)
    await run_until_exhausted(lw, inf)
    assert inf.has_synced()
    assert lw.list_calls == 0
    assert lw.watch_calls == ["stream", "3"]  # after the stream ended, resumed from its last revision
    assert rec.events == [("add", "a", "n1"), ("add", "b", "n1"), ("update", "b", "n2")]


async def test_a_stream_cut_before_its_initial_state_ended_reports_nothing_and_starts_over() -> None:
    lw = ScriptedListWatch()
    lw.stream_initial = False  # the script plays the server
    a, b = with_rv(na("a"), 1), with_rv(na("b"), 2)
    lw.step(added(a), then=ServiceUnavailable("connection reset by peer"))
    lw.step(added(a), added(b), WatchEvent(BOOKMARK, None, "2", initial_events_end=True), deleted(with_rv(b, 3)))
    inf, rec = streaming(lw)
    inf.start()
    await asyncio.wait_for(lw.exhausted.wait(), 5)
    assert lw.watch_calls == ["stream", "stream", "3"]
    assert rec.events == [("add", "a", "n1"), ("add", "b", "n1"), ("delete", "b", "n1")]
    await inf.stop()


async def test_a_streaming_relist_after_gone_reports_what_vanished() -> None:
    lw = ScriptedListWatch()
    lw.stream_initial = False  # the script plays the server
    a, b = with_rv(na("a"), 1), with_rv(na("b"), 2)
    lw.step(added(a), added(b), WatchEvent(BOOKMARK, None, "2", initial_events_end=True), then=Expired("too old"))
    lw.step(added(a), WatchEvent(BOOKMARK, None, "9", initial_events_end=True))  # b went meanwhile
    inf, rec = streaming(lw)
    await run_until_exhausted(lw, inf)
    assert lw.watch_calls == ["stream", "stream", "9"]
    assert rec.events == [("add", "a", "n1"), ("add", "b", "n1"), ("delete", "b", "n1")]
    assert sorted(o.metadata.name for o in inf.lister.list()) == ["a"]


async def test_a_stopped_informer_releases_its_handlers_owner_without_the_cycle_collector() -> None:
    """An agent drops an informer per VNI that stops being relevant, and the VNI's state (its handlers'
    owner) holds the informer; left in that cycle, thousands of them a second waited for the cyclic
    garbage collector, which then paused the simulated agents for 40-100 ms at a time."""
    import gc
    import weakref

    class Owner:  # like an agent's per-VNI state: its handlers close over it, and it holds the informer
        def __init__(self, inf: Informer[Any]) -> None:
            self.informer = inf
            inf.add_handlers(on_add=self.seen)

        def seen(self, o: Any) -> None:
            pass

    lw = ScriptedListWatch()
    lw.list_results = [([na("a", rv=1)], 1)]
    lw.step(added(na("b", rv=2)))
    inf, _ = informer(lw)
    owner = Owner(inf)
    await run_until_exhausted(lw, inf)
    ref = weakref.ref(owner)
    gc.disable()
    try:
        del owner
        assert ref() is None
    finally:
        gc.enable()
