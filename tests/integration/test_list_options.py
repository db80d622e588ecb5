"""List and watch parameters answered as kube-apiserver answers them, one combination per row.

The rules are k8s.io/apimachinery/pkg/apis/meta/internalversion/validation
ValidateListOptions (422 Invalid for kind `ListOptions.meta.k8s.io`), the
storage layer's continue rules (400), the parameter codec's decoding (first of
repeated values; a boolean is false only when absent, `0` or `false`; `+` is a
space in a query), and the watch start semantics of `resourceVersion` with
`sendInitialEvents`. Each row is sent over real HTTP to an in-process apiserver
holding two subnets in two namespaces, on a fake clock: a watch's timeoutSeconds passes when a test advances it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yarl

from kos.apiserver.server import APIServer
from kos.testing.apiserver import running_apiserver
from kos.testing.clock import FakeClock
from kos.testing.wait import eventually

API_VERSION = "network.example.com/v1alpha1"
PREFIX = f"/apis/{API_VERSION}"
SN = f"{PREFIX}/namespaces/lo/subnets"


@dataclasses.dataclass
class Server:
    session: aiohttp.ClientSession
    url: str
    api: APIServer
    clock: FakeClock
    rv: str = ""  # the list revision after seeding
    token: str = ""  # a continue token for a one-item page

    async def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        async with self.session.get(yarl.URL(self.url + path, encoded=True)) as r:
            return r.status, await asyncio.wait_for(r.read(), timeout)

    async def post(self, path: str, body: Any) -> Any:
        async with self.session.post(self.url + path, json=body) as r:
            assert r.status == 201, await r.read()
            return await r.json()

    def watches(self) -> float:
        """Subnet watches the server holds open."""
        value: float = self.api.metrics.watchers.labels("subnets")._value.get()
        return value

    async def watch(self, path: str, timeout_seconds: int, during: Any = None) -> tuple[int, bytes]:
        """A watch's whole answer: once it is open (its initial events pushed), `during()` runs, then the clock
        passes its timeoutSeconds and the stream ends."""
        before = self.watches()
        answer = asyncio.create_task(
            self.get(path + ("&" if "?" in path else "?") + f"timeoutSeconds={timeout_seconds}")
        )
        try:
            await eventually(lambda: self.watches() > before or answer.done(), timeout=10)
            if during is not None:
                await during()  # a write is answered once the cache has applied it and sent its events
            await self.clock.advance(timeout_seconds)
            return await asyncio.wait_for(answer, 10)
        finally:
            answer.cancel()


def subnet(name: str, vni: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Subnet", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"vni": vni, "ipv4": f"10.{vni}.0.0/24"}}  # fmt: skip


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    clock = FakeClock()
    async with running_apiserver(clock=clock) as api, aiohttp.ClientSession() as session:
        s = Server(session, api.url, api, clock)
        await s.post(SN, subnet("a", 1, {"app": "a"}))
        await s.post(SN, subnet("b", 2, {"app": "b"}))
        await s.post(f"{PREFIX}/namespaces/other/subnets", subnet("c", 3))
        _, body = await s.get(f"{SN}?limit=1")
        page = json.loads(body)
        s.rv, s.token = page["metadata"]["resourceVersion"], page["metadata"]["continue"]
        yield s


@dataclasses.dataclass(frozen=True)
class Row:
    query: str  # may use {rv} and {token}
    code: int
    reason: str = ""
    fragments: tuple[str, ...] = ()
    names: tuple[str, ...] | None = None  # for a 200 list: the names listed
    causes: int = 0  # for a 422: how many causes


LISTS = [
    # resourceVersionMatch needs resourceVersion, is forbidden with continue, is Exact or NotOlderThan
    Row(
        "resourceVersionMatch=NotOlderThan",
        422,
        "Invalid",
        ("ListOptions.meta.k8s.io", "resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ),
    Row("resourceVersionMatch=Exact", 422, "Invalid", ("forbidden unless resourceVersion is provided",)),
    Row(
        "resourceVersion=1&resourceVersionMatch=Newest",
        422,
        "Invalid",
        ('Unsupported value: "Newest"', '"Exact", "NotOlderThan", ""'),
    ),
    Row(
        "resourceVersion=0&resourceVersionMatch=Exact",
        422,
        "Invalid",
        ('resourceVersionMatch "exact" is forbidden for resourceVersion "0"',),
    ),
    Row("resourceVersion=0&resourceVersionMatch=NotOlderThan", 200, names=("a", "b")),
    Row("resourceVersion={rv}&resourceVersionMatch=Exact", 200, names=("a", "b")),
    Row("resourceVersion={rv}&resourceVersionMatch=NotOlderThan", 200, names=("a", "b")),
    Row("resourceVersion={rv}", 200, names=("a", "b")),
    Row("resourceVersion=0", 200, names=("a", "b")),
    Row("resourceVersionMatch=", 200, names=("a", "b")),  # empty is unset
    Row(
        "limit=1&continue={token}&resourceVersion=0&resourceVersionMatch=NotOlderThan",
        422,
        "Invalid",
        ("resourceVersionMatch is forbidden when continue is provided",),
    ),
    Row(
        "resourceVersionMatch=Exact&continue={token}", 422, "Invalid", ("unless resourceVersion", "continue"), causes=2
    ),
    # continue: with a resourceVersion other than 0 it is 400 (the storage layer's rule), with 0 it is fine
    Row(
        "limit=1&continue={token}&resourceVersion={rv}",
        400,
        "BadRequest",
        ("resourceVersion is not allowed when using continue",),
    ),
    Row("limit=1&continue={token}&resourceVersion=0", 200, names=("b",)),
    Row("limit=1&continue={token}", 200, names=("b",)),
    Row("limit=1", 200, names=("a",)),
    Row("limit=0", 200, names=("a", "b")),
    # sendInitialEvents is forbidden for a list, whatever its value
    Row("sendInitialEvents=true", 422, "Invalid", ("sendInitialEvents is forbidden for list",)),
    Row("sendInitialEvents=false", 422, "Invalid", ("sendInitialEvents is forbidden for list",)),
    Row(
        "watch=false&sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
        422,
        "Invalid",
        ("sendInitialEvents is forbidden for list", "unless resourceVersion"),
        causes=2,
    ),
    # decoded by a list although only a watch uses them
    Row("allowWatchBookmarks=true&timeoutSeconds=5", 200, names=("a", "b")),
    Row("timeoutSeconds=soon", 400, "BadRequest", ("timeoutSeconds",)),
    Row("limit=-1", 400, "BadRequest", ("limit",)),  # kos refuses it; Kubernetes reads it as no limit
    Row("limit=1.5", 400, "BadRequest", ("limit",)),
    # a boolean is false only when absent, 0 or false (any case)
    Row("watch=0", 200, names=("a", "b")),
    Row("watch=FALSE", 200, names=("a", "b")),
    Row("watch=false&watch=true", 200, names=("a", "b")),  # the first of repeated values counts
    # query decoding: + and %20 are spaces, repeated parameters keep the first, empty pairs are skipped
    Row("labelSelector=app+in+(a)", 200, names=("a",)),
    Row("labelSelector=app%20in%20(a)", 200, names=("a",)),
    Row("labelSelector=app%3Da&labelSelector=app%3Db", 200, names=("a",)),
    Row("limit=1&limit=abc", 200, names=("a",)),
    Row("limit=abc&limit=1", 400, "BadRequest", ("limit",)),
    Row("&&labelSelector=app%3Db&&", 200, names=("b",)),
    Row("labelSelector=app%3Da%zz", 400, "BadRequest", ("invalid URL escape",)),
]

WATCH_ERRORS = [
    Row(
        "resourceVersionMatch=NotOlderThan",
        422,
        "Invalid",
        ("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",),
    ),
    Row("resourceVersion={rv}&resourceVersionMatch=NotOlderThan", 422, "Invalid", ("unless sendInitialEvents",)),
    Row(
        "sendInitialEvents=true",
        422,
        "Invalid",
        ("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",),
    ),
    Row("sendInitialEvents=false&resourceVersion=0", 422, "Invalid", ("requires setting resourceVersionMatch",)),
    Row(
        "sendInitialEvents=true&resourceVersionMatch=Exact",
        422,
        "Invalid",
        ("requires setting resourceVersionMatch", 'Unsupported value: "Exact"', 'supported values: "NotOlderThan"'),
        causes=2,
    ),
    Row(
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&continue={token}",
        422,
        "Invalid",
        ("resourceVersionMatch is forbidden when continue is provided",),
    ),
    Row("timeoutSeconds=" + "9" * 5000, 400, "BadRequest", ("timeoutSeconds",)),
    Row("timeoutSeconds=-1", 400, "BadRequest", ("timeoutSeconds",)),
    Row("resourceVersion=abc", 400, "BadRequest", ("resourceVersion",)),
]


def _fill(q: str, s: Server) -> str:
    return q.replace("{rv}", s.rv).replace("{token}", s.token)


def _check(row: Row, status: int, body: bytes) -> None:
    assert status == row.code, (row.query, status, body[:500])
    doc = json.loads(body)
    if row.code == 200:
        if row.names is not None:
            assert tuple(i["metadata"]["name"] for i in doc["items"]) == row.names, (row.query, doc)
        return
    assert (doc["kind"], doc["code"], doc["reason"]) == ("Status", row.code, row.reason), doc
    for f in row.fragments:
        assert f in doc["message"], (f, doc["message"])
    if row.code == 422:
        causes = doc["details"]["causes"]
        assert len(causes) == (row.causes or 1), causes
        assert doc["details"]["group"] == "meta.k8s.io" and doc["details"]["kind"] == "ListOptions", doc


@pytest.mark.parametrize("row", LISTS, ids=[r.query for r in LISTS])
async def test_list_options(server: Server, row: Row) -> None:
    status, body = await server.get(f"{SN}?{_fill(row.query, server)}")
    _check(row, status, body)


@pytest.mark.parametrize("row", WATCH_ERRORS, ids=[r.query for r in WATCH_ERRORS])
async def test_watch_options_refused(server: Server, row: Row) -> None:
    for path in (f"{SN}?watch=true&", f"{PREFIX}/watch/namespaces/lo/subnets?"):
        status, body = await server.get(path + _fill(row.query, server))
        _check(row, status, body)


async def _events(s: Server, path: str) -> list[dict[str, Any]]:
    """The events of a watch with timeoutSeconds=1 (the stream ends by itself)."""
    status, body = await s.watch(path, 1)
    assert status == 200, body[:500]
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for e in events:
        meta = e["object"]["metadata"]
        end = meta.get("annotations", {}).get("k8s.io/initial-events-end") == "true"
        out.append((e["type"], "initial-events-end" if end else meta.get("name", "")))
    return out


async def test_watch_list_ends_its_initial_events_with_a_bookmark_only_when_bookmarks_are_allowed(
    server: Server,
) -> None:
    q = f"{SN}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
    assert _summary(await _events(server, q + "&allowWatchBookmarks=true")) == [
        ("ADDED", "a"), ("ADDED", "b"), ("BOOKMARK", "initial-events-end")]  # fmt: skip
    assert _summary(await _events(server, q)) == [("ADDED", "a"), ("ADDED", "b")]
    # not older than resourceVersion: still the current objects
    assert _summary(await _events(server, q + f"&resourceVersion={server.rv}")) == [("ADDED", "a"), ("ADDED", "b")]


async def test_watch_without_initial_events_starts_now_from_an_empty_or_zero_resource_version(
    server: Server,
) -> None:
    """sendInitialEvents=false with resourceVersion "" or "0": no initial objects, no replayed history (was 400)."""
    for rv in ("", "&resourceVersion=0"):
        q = f"{SN}?watch=1&sendInitialEvents=false&resourceVersionMatch=NotOlderThan{rv}"

        async def write(rv: str = rv) -> None:
            await server.post(SN, subnet(f"new{len(rv)}", 10 + len(rv)))

        status, body = await server.watch(q, 2, write)
        assert status == 200, body
        events = [json.loads(line) for line in body.splitlines() if line.strip()]
        assert _summary(events) == [("ADDED", f"new{len(rv)}")], events


async def test_legacy_watch_starts_with_the_current_objects(server: Server) -> None:
    for q in ("", "&resourceVersion=0"):
        assert _summary(await _events(server, f"{SN}?watch=1{q}")) == [("ADDED", "a"), ("ADDED", "b")]
    assert _summary(await _events(server, f"{SN}?watch=1&resourceVersion={server.rv}")) == []


@pytest.mark.parametrize("value", ["true", "1", "maybe", "", "True", "yes"])
async def test_any_watch_value_but_false_or_0_is_a_watch(server: Server, value: str) -> None:
    """Kubernetes' Convert_Slice_string_To_bool: `watch=maybe` and `watch=` are watches."""
    assert _summary(await _events(server, f"{SN}?watch={value}&limit=1")) == [("ADDED", "a"), ("ADDED", "b")]


async def test_bookmarks_flag_follows_the_same_rule(server: Server) -> None:
    q = f"{SN}?watch=1&sendInitialEvents=1&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=perhaps"
    assert _summary(await _events(server, q))[-1] == ("BOOKMARK", "initial-events-end")


async def test_a_named_watch_refuses_a_field_selector_for_another_name(server: Server) -> None:
    named = f"{PREFIX}/watch/namespaces/lo/subnets/a"
    assert _summary(await _events(server, named)) == [("ADDED", "a")]
    assert _summary(await _events(server, named + "?fieldSelector=metadata.name%3Da")) == [("ADDED", "a")]
    for fs in ("metadata.name%3Db", "spec.vni%3D1", "metadata.name!%3Da"):
        status, body = await server.get(f"{named}?fieldSelector={fs}")
        assert status == 400, body
        assert "fieldSelector metadata.name doesn't match requested name" in json.loads(body)["message"]
    # the same on `?watch=true` of an item path
    status, body = await server.get(f"{SN}/a?watch=true&fieldSelector=metadata.name%3Db")
    assert status == 400, body


async def test_a_name_in_a_watch_path_cannot_add_selector_terms(server: Server) -> None:
    """The name was once spliced into a field selector: `b,metadata.namespace=lo` must name nothing."""
    assert _summary(await _events(server, f"{PREFIX}/watch/namespaces/lo/subnets/b,metadata.namespace%3Dlo")) == []


async def test_deletecollection_honours_limit_and_validates_its_options(server: Server) -> None:
    """Delete-collection lists with its ListOptions (store.go DeleteCollection): limit=1 deletes one object."""
    async with server.session.delete(yarl.URL(server.url + f"{SN}?resourceVersionMatch=Exact", encoded=True)) as r:
        assert r.status == 422, await r.read()
    async with server.session.delete(yarl.URL(server.url + f"{SN}?limit=1", encoded=True)) as r:
        assert r.status == 200, await r.read()
        assert [i["metadata"]["name"] for i in (await r.json())["items"]] == ["a"]
    _, body = await server.get(SN)
    assert [i["metadata"]["name"] for i in json.loads(body)["items"]] == ["b"]


# --- the same options over the watch multiplexer -----------------------------------------------------


async def _mux(s: Server, *requests: dict[str, Any] | str, until: set[int]) -> dict[int, list[dict[str, Any]]]:
    """Send `requests` on one multiplexer connection; the decoded lines per watch id until `until` all ended."""
    out: dict[int, list[dict[str, Any]]] = {}
    ended: set[int] = set()
    async with s.session.ws_connect(s.url.replace("http", "ws", 1) + f"{PREFIX}/watchmux") as ws:
        for r in requests:
            await ws.send_str(r if isinstance(r, str) else json.dumps(r))
        deadline = asyncio.get_running_loop().time() + 10
        while not until <= ended:
            assert asyncio.get_running_loop().time() < deadline, f"ended: {ended}"
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.05)
            except TimeoutError:  # the open watches' timeoutSeconds pass (their timers are armed after their
                await s.clock.advance(1)  # initial events are queued: advancing early loses nothing)
                continue
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            data: bytes = msg.data
            while data:
                head, _, rest = data.partition(b"\n")
                wid_s, size_s = head.split(b" ")
                wid, size = int(wid_s), int(size_s)
                if size == 0:
                    ended.add(wid)
                out.setdefault(wid, []).extend(json.loads(x) for x in rest[:size].splitlines() if x.strip())
                data = rest[size:]
    return out


def _watch(wid: int, **kw: Any) -> dict[str, Any]:
    return {"op": "watch", "id": wid, "resource": "subnets", "timeoutSeconds": 1, **kw}


async def test_watchmux_subscriptions_are_judged_like_http_watches(server: Server) -> None:
    got = await _mux(
        server,
        _watch(1, namespace=""),  # empty is no namespace, not every one
        _watch(2, namespace="lo/x"),
        _watch(3, namespace="lo", resourceVersionMatch="NotOlderThan"),
        _watch(4, namespace="lo", timeoutSeconds=10**30),
        _watch(5, namespace="lo", labelSelector=BACKTRACKING),
        '{"op": "cancel", "id": 1e400}',  # not int()ed: the connection carries on
        _watch(6, namespace="lo"),
        _watch(7),
        _watch(
            8, namespace="lo", sendInitialEvents=True, resourceVersionMatch="NotOlderThan", allowWatchBookmarks=True
        ),
        until={1, 2, 3, 4, 5, 6, 7, 8},
    )

    def error(wid: int) -> tuple[int, str]:
        (ev,) = got[wid]
        assert ev["type"] == "ERROR", ev
        return ev["object"]["code"], ev["object"]["message"]

    assert error(1)[0] == 400 and "non-empty" in error(1)[1]
    assert error(2) == (400, "Namespace parameter invalid: \"lo/x\": may not contain '/'")
    assert error(3)[0] == 422 and "unless sendInitialEvents is provided" in error(3)[1]
    assert error(4)[0] == 400 and "timeoutSeconds" in error(4)[1]
    assert error(5)[0] == 400 and "invalid label key" in error(5)[1]
    assert _summary(got[6]) == [("ADDED", "a"), ("ADDED", "b")]
    assert _summary(got[7]) == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]
    assert _summary(got[8]) == [("ADDED", "a"), ("ADDED", "b"), ("BOOKMARK", "initial-events-end")]


BACKTRACKING = "a" + ".a" * 26 + "-"
