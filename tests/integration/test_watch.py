"""Watch semantics over HTTP: replay from a resourceVersion, selector transitions, 410, bookmarks, timeouts.

The server runs on a fake clock: bookmarks and watch timeouts come when a test advances it. A test that
checks an event did *not* arrive first waits for a later event on the same stream (a barrier: a watch
delivers in revision order), so a slow delivery cannot make it pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kos.apiserver.server import APIServer
from kos.testing.apiserver import running_apiserver
from kos.testing.clock import FakeClock
from kos.testing.http import RawAPI, attachment
from kos.testing.wait import eventually

NS = "ns"
NA = RawAPI.path("networkattachments", NS)
ALL_NA = RawAPI.path("networkattachments")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[APIServer]:
    async with running_apiserver(bookmark_interval=10.0, watch_cache_size=100, clock=clock) as s:
        yield s


@pytest.fixture
async def api(server: APIServer) -> AsyncIterator[RawAPI]:
    async with RawAPI(server.url) as a:
        yield a


class Collector:
    """Runs a watch in the background and keeps every event."""

    def __init__(self, api: RawAPI, path: str, **params: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.done = False
        self._task = asyncio.create_task(self._run(api, path, params))

    async def _run(self, api: RawAPI, path: str, params: dict[str, str]) -> None:
        async for ev in api.watch(path, params):
            self.events.append(ev)
        self.done = True

    def seen(self, include_bookmarks: bool = False) -> list[tuple[str, str]]:
        return [(e["type"], e["object"]["metadata"].get("name", "")) for e in self.events
                if include_bookmarks or e["type"] != "BOOKMARK"]  # fmt: skip

    async def wait_for(self, n: int, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.seen()) < n:
            assert asyncio.get_running_loop().time() < deadline, f"only {self.seen()}"
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass


async def test_watch_from_resource_version_replays_what_followed(api: RawAPI) -> None:
    r0 = (await api.post(NA, attachment("a0", "n1", "s"))).body["metadata"]["resourceVersion"]
    await api.post(NA, attachment("a1", "n1", "s"))
    await api.patch(NA + "/a0", {"metadata": {"labels": {"x": "y"}}})
    await api.delete(NA + "/a1")
    w = Collector(api, NA, resourceVersion=r0)
    await w.wait_for(3)
    assert w.seen() == [("ADDED", "a1"), ("MODIFIED", "a0"), ("DELETED", "a1")]
    revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in w.events]
    assert revs == sorted(revs) and revs[0] > int(r0)
    await api.post(NA, attachment("a2", "n1", "s"))
    await w.wait_for(4)
    assert w.seen()[-1] == ("ADDED", "a2")
    await w.stop()


async def test_watch_without_resource_version_starts_with_current_state(api: RawAPI) -> None:
    for i in range(3):
        await api.post(NA, attachment(f"a{i}", "n1", "s"))
    w = Collector(api, NA)
    await w.wait_for(3)
    assert w.seen() == [("ADDED", "a0"), ("ADDED", "a1"), ("ADDED", "a2")]
    await w.stop()


async def registered(server: APIServer, n: int) -> None:
    """Wait until the server holds `n` watches (a watch started with resourceVersion=0 must see what follows)."""
    gauge = server.metrics.watchers.labels("networkattachments")
    deadline = asyncio.get_running_loop().time() + 10
    while gauge._value.get() < n:
        assert asyncio.get_running_loop().time() < deadline, "the watches did not start"
        await asyncio.sleep(0.01)


async def test_field_selector_transitions(api: RawAPI, server: APIServer) -> None:
    """The agent's local watch: entering `status.ipv4!=` is ADDED, leaving it is DELETED with the old content."""
    w = Collector(api, ALL_NA, fieldSelector="spec.node=n1,status.ipv4!=", resourceVersion="0")
    other = Collector(api, ALL_NA, fieldSelector="spec.node=n2,status.ipv4!=", resourceVersion="0")
    await registered(server, 2)
    await api.post(NA, attachment("a0", "n1", "s"))
    await api.post(NA, attachment("b0", "n2", "s"))
    await api.give_address(NA + "/a0", "10.0.0.2", 5)
    await api.patch(NA + "/a0/status", {"status": {"macAddress": "m"}})
    cleared = await api.patch(NA + "/a0/status", {"status": {"ipv4": None}})
    await w.wait_for(3)
    assert w.seen() == [("ADDED", "a0"), ("MODIFIED", "a0"), ("DELETED", "a0")]
    deleted = w.events[-1]["object"]
    assert deleted["status"]["ipv4"] == "10.0.0.2"  # the last content that matched ...
    assert deleted["metadata"]["resourceVersion"] == cleared.body["metadata"]["resourceVersion"]  # ... at the new rv
    await api.give_address(NA + "/b0", "10.0.0.3", 5)  # a barrier: other's first event comes after all of a0's
    await other.wait_for(1)
    assert other.seen() == [("ADDED", "b0")]
    await w.stop()
    await other.stop()


async def test_per_vni_watch_sees_only_its_vni(api: RawAPI, server: APIServer) -> None:
    sel = "spec.node!=n1,status.addressVNI=7,status.ipv4!=,status.hostIP!="
    w = Collector(api, NA, fieldSelector=sel, resourceVersion="0")
    await registered(server, 1)
    await api.post(NA, attachment("a", "n2", "s"))
    await api.post(NA, attachment("b", "n2", "s"))
    await api.post(NA, attachment("c", "n1", "s"))
    await api.give_address(NA + "/a", "10.0.0.2", 7)
    await api.patch(NA + "/a/status", {"status": {"hostIP": "192.0.2.2"}})
    await api.give_address(NA + "/b", "10.0.0.3", 8, hostIP="192.0.2.2")
    await api.give_address(NA + "/c", "10.0.0.4", 7, hostIP="192.0.2.1")
    await api.delete(NA + "/a")
    await api.post(NA, attachment("z", "n2", "s"))
    await api.give_address(NA + "/z", "10.0.0.5", 7, hostIP="192.0.2.2")  # a barrier: the last event it may see
    await w.wait_for(3)
    assert w.seen() == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "z")]
    await w.stop()


async def test_too_old_resource_version_is_gone(api: RawAPI) -> None:
    first = (await api.post(NA, attachment("a", "n", "s"))).body["metadata"]["resourceVersion"]
    for i in range(300):  # the cache keeps at most 2 x 100 events per kind
        await api.patch(NA + "/a", {"metadata": {"labels": {"i": str(i)}}})
    w = Collector(api, NA, resourceVersion=first)
    await w.wait_for(1)
    ev = w.events[0]
    assert ev["type"] == "ERROR" and ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
    assert "too old resource version" in ev["object"]["message"]
    await eventually(lambda: w.done, timeout=5)  # the server ends the stream after the ERROR
    lst = await api.get(NA, params={"resourceVersion": first, "resourceVersionMatch": "Exact"})
    assert lst.status == 410


async def test_bookmarks_keep_quiet_watchers_current(api: RawAPI, server: APIServer, clock: FakeClock) -> None:
    w = Collector(api, NA, fieldSelector="spec.node=quiet", allowWatchBookmarks="true", resourceVersion="0")
    no = Collector(api, NA, fieldSelector="spec.node=quiet", resourceVersion="0")
    await registered(server, 2)
    rv = (await api.post(NA, attachment("noise", "busy", "s"))).body["metadata"]["resourceVersion"]
    await clock.advance(10)  # the bookmark interval: the quiet watch is due one
    await eventually(lambda: w.events, timeout=5)
    bm = w.events[0]
    assert bm["type"] == "BOOKMARK" and bm["object"]["metadata"]["resourceVersion"] == rv
    assert bm["object"]["kind"] == "NetworkAttachment"
    await api.post(NA, attachment("q", "quiet", "s"))  # a barrier: no bookmark came before this event
    await w.wait_for(1)
    await no.wait_for(1)
    assert no.seen(include_bookmarks=True) == [("ADDED", "q")]
    await w.stop()
    await no.stop()


async def test_send_initial_events_ends_with_annotated_bookmark(api: RawAPI) -> None:
    await api.post(NA, attachment("a0", "n", "s"))
    w = Collector(api, NA, sendInitialEvents="true", allowWatchBookmarks="true", resourceVersionMatch="NotOlderThan")
    await w.wait_for(1)
    deadline = asyncio.get_running_loop().time() + 5
    while len(w.events) < 2:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert w.events[0]["type"] == "ADDED"
    assert w.events[1]["type"] == "BOOKMARK"
    assert w.events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    await w.stop()


async def test_timeout_seconds_ends_the_stream(api: RawAPI, server: APIServer, clock: FakeClock) -> None:
    w = Collector(api, NA, timeoutSeconds="30", resourceVersion="0")
    await registered(server, 1)
    await clock.advance(29.9)
    await api.post(NA, attachment("a", "n", "s"))  # a barrier: the stream is still open at 29.9 s
    await w.wait_for(1)
    assert not w.done
    await clock.advance(0.1)
    await eventually(lambda: w.done, timeout=5)


async def test_watch_single_object_path_and_legacy_watch_path(api: RawAPI) -> None:
    await api.post(NA, attachment("a0", "n", "s"))
    await api.post(NA, attachment("a1", "n", "s"))
    w = Collector(api, NA + "/a1", resourceVersion="0")
    legacy = Collector(api, "/apis/network.example.com/v1alpha1/watch/namespaces/ns/networkattachments/a0")
    await w.wait_for(1)
    await legacy.wait_for(1)
    assert w.seen() == [("ADDED", "a1")] and legacy.seen() == [("ADDED", "a0")]
    await w.stop()
    await legacy.stop()


async def test_table_watch(api: RawAPI, server: APIServer) -> None:
    h = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    events: list[dict[str, Any]] = []

    async def run() -> None:
        async with api.session.get(api.base + NA, params={"watch": "1", "resourceVersion": "0"},
                                   headers={"Accept": h}) as r:  # fmt: skip
            async for line in r.content:
                import json

                events.append(json.loads(line))
                return

    t = asyncio.create_task(run())
    await registered(server, 1)
    await api.post(NA, attachment("a0", "n", "s"))
    await asyncio.wait_for(t, 5)
    assert events[0]["type"] == "ADDED" and events[0]["object"]["kind"] == "Table"
    assert events[0]["object"]["rows"][0]["cells"][0] == "a0"


async def test_a_watcher_that_cannot_keep_up_is_closed_and_can_resume() -> None:
    async with running_apiserver(watcher_max_bytes=20_000) as s, RawAPI(s.url) as api:
        await api.post(NA, attachment("a", "n", "s"))
        # open a raw connection and never read from it
        _reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(f"GET {NA}?watch=1&resourceVersion=0 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        await registered(s, 1)
        big = "x" * 60_000
        for i in range(200):
            await api.patch(NA + "/a", {"metadata": {"annotations": {"blob": f"{i}{big}"}}})
        m = (await api.get("/metrics")).body
        deadline = asyncio.get_running_loop().time() + 5
        while 'kos_apiserver_watchers_dropped_total{resource="networkattachments"} 1.0' not in m:
            assert asyncio.get_running_loop().time() < deadline, m
            await asyncio.sleep(0.05)  # polling the metric until it shows the drop
            m = (await api.get("/metrics")).body
        writer.close()
