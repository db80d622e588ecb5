"""A `Transport` without sockets, for unit tests of the client and of reflectors and informers.

httpx's `MockTransport` is the precedent: a handler function receives each `Request`
and returns what the server would — a `Response` for a call (or a refused watch), a
`Stream` for a watch — or raises what the network would (`ConnectionFailed`,
`TimeoutError`). The handler may be async. Every request is recorded in `requests`.

`ScriptedServer` is a ready handler for reflector tests: list answers and watch streams
are queued per test, and once its script is used up a watch stays open and quiet and
`idle` is set — the barrier a test waits on before checking that nothing more happened.

The helpers build the bodies as the apiserver would (`list_body`, `event`, `bookmark`,
`error_event`, `status_response`), through the same codec and watch framing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from kos.api import codec, watchframe
from kos.api.errors import StatusError
from kos.http.clientresponse import Response, StreamRefused

__all__ = [
    "MockTransport", "Request", "ScriptedServer", "Stream", "bookmark", "error_event", "event", "json_response",
    "list_body", "status_response",
]  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes | None
    headers: dict[str, str]

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") in ("1", "true")


@dataclasses.dataclass(slots=True)
class Stream:
    """A canned watch body: `lines` in order (an exception among them is raised when reached), then
    `then` raised if given, else the end of the watch — or, with `hang`, an open quiet stream."""

    lines: Sequence[bytes | BaseException] = ()
    then: BaseException | None = None
    hang: bool = False


Answer = Response | Stream
Handler = Callable[[Request], Answer | Awaitable[Answer]]


class MockTransport:
    """A `kos.client.transport.Transport` whose server is `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.open_streams = 0
        self.closed = False

    async def _answer(
        self, method: str, path: str, query: Mapping[str, str] | None, body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> Answer:  # fmt: skip
        req = Request(method, path, dict(query or {}), body, dict(headers or {}))
        self.requests.append(req)
        got = self.handler(req)
        if inspect.isawaitable(got):
            got = await got
        return got

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Response:
        got = await self._answer(method, path, query, body, headers)
        if not isinstance(got, Response):
            raise TypeError(f"the handler answered a {method} call with a {type(got).__name__}")
        return got

    async def stream(
        self, path: str, *, query: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[list[bytes], None]:
        got = await self._answer("GET", path, query, None, headers)
        if isinstance(got, Response):
            if got.status >= 300:
                raise StreamRefused(got)
            got = Stream(watchframe.split(got.body))
        self.open_streams += 1
        try:
            for line in got.lines:
                if isinstance(line, BaseException):
                    raise line
                yield [line]
            if got.then is not None:
                raise got.then
            if got.hang:
                await asyncio.Event().wait()
        finally:
            self.open_streams -= 1

    async def close(self) -> None:
        self.closed = True


class ScriptedServer:
    """A handler: `lists` answer the next list calls (then the last one again), `watches` the next
    watches; a watch past the script hangs quietly and sets `idle`."""

    def __init__(self) -> None:
        self.lists: list[Response] = []
        self.watches: list[Answer] = []
        self.list_calls = 0
        self.watch_versions: list[str] = []
        """The resourceVersion each watch asked to start from."""
        self.idle = asyncio.Event()
        self._last_list: Response | None = None

    def __call__(self, req: Request) -> Answer:
        if req.is_watch:
            self.watch_versions.append(req.query.get("resourceVersion", ""))
            if self.watches:
                return self.watches.pop(0)
            self.idle.set()
            return Stream(hang=True)
        self.list_calls += 1
        if self.lists:
            self._last_list = self.lists.pop(0)
        if self._last_list is None:
            raise AssertionError(f"no list answer scripted for {req.method} {req.path}")
        return self._last_list


def json_response(body: Any, status: int = 200) -> Response:
    """`body` (an API object, or plain data) encoded as the server encodes it."""
    return Response(status, codec.encode(body), {b"content-type": b"application/json"})


def status_response(err: StatusError) -> Response:
    """The answer the server gives for `err`: its code, and its `Status` as the body."""
    return json_response(err.to_status(), err.code)


def list_body(items: Sequence[Any], resource_version: str, kind: str = "List") -> Response:
    """A list answer: `items` (API objects) at `resource_version`."""
    body = b",".join(codec.encode(o) for o in items)
    head = b'{"kind":"%b","apiVersion":"v1","metadata":{"resourceVersion":"%b"},"items":[' % (
        kind.encode(), resource_version.encode())  # fmt: skip
    return Response(200, head + body + b"]}", {b"content-type": b"application/json"})


def event(typ: str, obj: Any) -> bytes:
    """One watch line (without its newline) carrying `obj`."""
    return watchframe.frame(typ, codec.encode(obj))[:-1]


def bookmark(resource_version: str, *, initial_events_end: bool = False) -> bytes:
    """A BOOKMARK line at `resource_version` (the object carries only its metadata, as Kubernetes')."""
    ann = b',"annotations":{"k8s.io/initial-events-end":"true"}' if initial_events_end else b""
    obj = b'{"kind":"NetworkAttachment","metadata":{"resourceVersion":"%b"%b}}' % (resource_version.encode(), ann)
    return watchframe.frame("BOOKMARK", obj)[:-1]


def error_event(err: StatusError) -> bytes:
    """An ERROR line carrying `err`'s Status (how a server ends a watch it cannot go on with, e.g. 410)."""
    return watchframe.frame("ERROR", codec.encode(err.to_status()))[:-1]
