"""The client and the reflector against `kos.testing.transport.MockTransport`: no sockets.

The informer runs on a real `Client` (so watch lines go through the one decoder); the
server is a `ScriptedServer`. Each test waits for the server's `idle` barrier (the
reflector has consumed the whole script and sits in a quiet watch) before checking
what happened, so nothing is checked after a guessed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
import pytest

from kos.api.errors import Expired, InternalError, NotFound, ServiceUnavailable, StatusError
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.client.informer import Informer
from kos.client.rest import Client
from kos.http.clientresponse import ConnectionFailed, Response
from kos.testing.listwatch import with_rv
from kos.testing.transport import (
    MockTransport,
    Request,
    ScriptedServer,
    Stream,
    bookmark,
    error_event,
    event,
    json_response,
    list_body,
    status_response,
)


def na(name: str, rv: int, node: str = "n1") -> NetworkAttachment:
    return with_rv(NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns"),
                                     spec=NetworkAttachmentSpec(node=node)), rv)  # fmt: skip


# --- the client's calls ------------------------------------------------------------------------


async def test_a_call_is_one_request_and_its_answer_decoded() -> None:
    def handler(req: Request) -> Response:
        return json_response(na("a", 7))

    mock = MockTransport(handler)
    async with Client("http://unused", transport=mock) as c:
        got = await c.get(NetworkAttachment, "ns", "a", resource_version="5")
        created = await c.create(na("b", 0))
    assert got.metadata.resource_version == "7" and created.metadata.name == "a"
    get, post = mock.requests
    assert (get.method, get.path, get.query, get.body) == (
        "GET", "/apis/network.example.com/v1alpha1/namespaces/ns/networkattachments/a", {"resourceVersion": "5"}, None,
    )  # fmt: skip
    assert post.method == "POST" and post.headers == {"Content-Type": "application/json"}
    assert msgspec.json.decode(post.body or b"")["metadata"]["name"] == "b"
    assert mock.closed


async def test_errors_come_back_as_the_status_classes_and_network_failures_as_503() -> None:
    answers: list[Any] = [
        status_response(NotFound('networkattachments "a" not found')),
        Response(502, b"<html>bad gateway</html>"),  # not a Status: the text becomes the message
        ConnectionFailed("cannot connect to unused:80: refused"),
        TimeoutError("no response within 60s"),
    ]

    def handler(req: Request) -> Response:
        a = answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a  # type: ignore[no-any-return]

    async with Client("http://unused", transport=MockTransport(handler)) as c:
        with pytest.raises(NotFound):
            await c.get(NetworkAttachment, "ns", "a")
        with pytest.raises(StatusError, match="bad gateway") as e:
            await c.get(NetworkAttachment, "ns", "a")
        assert e.value.code == 502
        with pytest.raises(ServiceUnavailable, match="refused"):
            await c.get(NetworkAttachment, "ns", "a")
        with pytest.raises(ServiceUnavailable, match="TimeoutError"):
            await c.get(NetworkAttachment, "ns", "a")


async def test_a_refused_watch_raises_its_status_and_a_broken_one_503() -> None:
    answers: list[Any] = [status_response(Expired("too old resource version: 1 (5)")),
                          Stream([event("ADDED", na("a", 2))], then=ConnectionFailed("reset by peer"))]  # fmt: skip
    mock = MockTransport(lambda req: answers.pop(0))
    async with Client("http://unused", transport=mock) as c:
        with pytest.raises(Expired):
            async for _ in c.watch(NetworkAttachment, resource_version="1"):
                pass
        got = []
        with pytest.raises(ServiceUnavailable, match="reset by peer"):
            async for ev in c.watch(NetworkAttachment, resource_version="1"):
                got.append((ev.type, ev.object.metadata.name))
        assert got == [("ADDED", "a")]
        assert c.watch_events_received == 1
    assert mock.requests[0].query["watch"] == "1" and mock.requests[0].query["allowWatchBookmarks"] == "true"
    assert mock.open_streams == 0  # both streams were closed


async def test_leaving_a_watch_early_closes_its_stream() -> None:
    mock = MockTransport(lambda req: Stream([event("ADDED", na("a", 2)), event("ADDED", na("b", 3))], hang=True))
    async with Client("http://unused", transport=mock) as c:
        watch = c.watch(NetworkAttachment)
        async with contextlib.aclosing(watch):
            async for _ in watch:
                assert mock.open_streams == 1
                break
        assert mock.open_streams == 0


# --- the reflector, through the client ----------------------------------------------------------


class Harness:
    def __init__(self) -> None:
        self.server = ScriptedServer()
        self.client = Client("http://unused", transport=MockTransport(self.server))
        self.informer: Informer[NetworkAttachment] = Informer(self.client, NetworkAttachment)
        self.informer.reflector.max_backoff = 0.001
        self.informer.reflector.initial_backoff = 0.001
        self.events: list[tuple[str, str, str]] = []
        self.informer.add_handlers(
            on_add=lambda o: self.events.append(("add", o.metadata.name, o.metadata.resource_version)),
            on_update=lambda old, new: self.events.append(("update", new.metadata.name, new.metadata.resource_version)),
            on_delete=lambda o: self.events.append(("delete", o.metadata.name, o.metadata.resource_version)),
        )

    async def run_script(self) -> None:
        self.informer.start()
        await asyncio.wait_for(self.server.idle.wait(), 5)
        task = self.informer._task
        assert task is not None and not task.done(), "the informer stopped"
        await self.informer.stop()
        await self.client.close()

    def cached(self) -> list[tuple[str, str]]:
        return sorted((o.metadata.name, o.metadata.resource_version) for o in self.informer.lister.list())


async def test_a_bookmark_moves_the_revision_without_a_handler_call() -> None:
    h = Harness()
    h.server.lists = [list_body([na("a", 1)], "1")]
    h.server.watches = [Stream([bookmark("40")])]
    await h.run_script()
    assert h.events == [("add", "a", "1")]
    assert h.server.watch_versions == ["1", "40"]
    assert h.server.list_calls == 1


async def test_a_disconnect_resumes_from_the_last_revision_without_relisting() -> None:
    h = Harness()
    h.server.lists = [list_body([na("a", 1)], "1")]
    h.server.watches = [Stream([event("ADDED", na("b", 2))], then=ConnectionFailed("connection reset by peer")),
                        Stream([event("MODIFIED", na("b", 3))])]  # fmt: skip
    await h.run_script()
    assert h.server.list_calls == 1
    assert h.server.watch_versions == ["1", "2", "3"]
    assert h.events == [("add", "a", "1"), ("add", "b", "2"), ("update", "b", "3")]


@pytest.mark.parametrize("how", ["error-event", "refused"])
async def test_gone_mid_watch_relists_and_reports_what_changed(how: str) -> None:
    """A 410 either as an ERROR event carrying a Status (kube-apiserver's way) or as the watch's answer."""
    h = Harness()
    gone = Expired("too old resource version: 2 (90)")
    h.server.lists = [list_body([na("a", 1), na("b", 2)], "2"),
                      list_body([na("a", 95), na("c", 96)], "96")]  # fmt: skip
    h.server.watches = [Stream([event("MODIFIED", na("a", 3)), error_event(gone)]) if how == "error-event"
                        else status_response(gone)]  # fmt: skip
    await h.run_script()
    assert h.server.list_calls == 2
    assert h.server.watch_versions == ["2", "96"]
    before = [("add", "a", "1"), ("add", "b", "2")] + ([("update", "a", "3")] if how == "error-event" else [])
    assert h.events == [*before, ("delete", "b", "2"), ("update", "a", "95"), ("add", "c", "96")]
    assert h.cached() == [("a", "95"), ("c", "96")]


async def test_an_error_event_other_than_gone_backs_off_and_resumes() -> None:
    h = Harness()
    h.server.lists = [list_body([na("a", 1)], "1")]
    h.server.watches = [Stream([event("MODIFIED", na("a", 2)), error_event(InternalError("etcd hiccup"))]),
                        Stream([event("MODIFIED", na("a", 3))])]  # fmt: skip
    await h.run_script()
    assert h.server.list_calls == 1
    assert h.server.watch_versions == ["1", "2", "3"]
    assert h.events == [("add", "a", "1"), ("update", "a", "2"), ("update", "a", "3")]


@pytest.mark.parametrize(
    "bad",
    [b'{"type":"MODIFIED","object":{"metadata":', b"not json at all", b'{"type":"MODIFIED","object":{"spec":7}}'],
    ids=["truncated", "not-json", "wrong-shape"],
)
async def test_a_malformed_line_is_logged_backed_off_and_relisted(bad: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """Before issue 11 this ended the informer silently and froze its cache."""
    h = Harness()
    h.server.lists = [list_body([na("a", 1)], "1"), list_body([na("a", 5), na("b", 6)], "6")]
    h.server.watches = [Stream([event("MODIFIED", na("a", 2)), bad, event("MODIFIED", na("a", 3))]),
                        Stream([event("ADDED", na("c", 7))])]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="kos.client.reflector"):
        await h.run_script()
    assert h.informer.reflector.failures == 1
    assert h.server.list_calls == 2
    assert h.server.watch_versions == ["1", "6", "7"]
    assert h.events == [("add", "a", "1"), ("update", "a", "2"), ("update", "a", "5"), ("add", "b", "6"),
                        ("add", "c", "7")]  # fmt: skip
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is not None
    assert "watch failed" in warnings[0].getMessage()
    assert any(r.getMessage() == "backing off" for r in caplog.records)


async def test_a_failing_list_backs_off_with_growing_delays() -> None:
    h = Harness()
    h.informer.reflector.max_backoff = 1.0
    slept: list[float] = []

    class Clock:
        async def sleep(self, seconds: float) -> None:
            slept.append(seconds)

    h.informer.reflector.clock = Clock()  # type: ignore[assignment]
    h.server.lists = [status_response(InternalError("down"))] * 4 + [list_body([na("a", 1)], "1")]
    await h.run_script()
    assert h.server.list_calls == 5 and h.events == [("add", "a", "1")]
    assert len(slept) == 4
    # jittered (×0.5–1.5) around a doubling base 0.001, 0.002, 0.004, 0.008
    for i, s in enumerate(slept):
        assert 0.0005 * 2**i <= s <= 0.0015 * 2**i
