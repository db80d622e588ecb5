"""A call answered 429 or 503 with `Retry-After: <seconds>` is sent again after that many seconds of the
client's clock (bounded), for every verb and for watches, at most MAX_RETRIES times; an answer without the
header (or with a date), and a 504, is an error at once — client-go's request.go (checkWait) and with_retry.go."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kos.api.errors import Conflict, ServiceUnavailable, StatusError, TooManyRequests
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.client.rest import MAX_RETRIES, RETRY_AFTER_MAX, Client, retry_after
from kos.http.clientresponse import Response
from kos.testing.clock import FakeClock
from kos.testing.transport import MockTransport, Request, Stream, event, json_response, status_response


def na(name: str = "a") -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace="ns"), spec=NetworkAttachmentSpec(node="n", subnet="s")
    )


def busy(seconds: str | None, status: int = 429) -> Response:
    err = TooManyRequests("too many requests, please try again later") if status == 429 else ServiceUnavailable("x")
    r = status_response(err)
    r.status = status
    if seconds is not None:
        r.headers = {**r.headers, b"retry-after": seconds.encode()}
    return r


class Script:
    """Answers the next calls with `answers` in order, then `then` for ever."""

    def __init__(self, answers: list[Response | Stream], then: Response | Stream) -> None:
        self.answers, self.then = answers, then

    def __call__(self, req: Request) -> Response | Stream:
        return self.answers.pop(0) if self.answers else self.then


async def waits(clock: FakeClock, call: Awaitable[Any], steps: list[float]) -> Any:
    """Run `call`, checking that it sleeps exactly `steps` (in order) on `clock` before it finishes."""
    task = asyncio.ensure_future(call)
    for step in steps:
        await clock.settle()
        assert not task.done()
        assert clock.next_due() == pytest.approx(clock.monotonic() + step)
        await clock.advance(step)
    await clock.settle()
    assert task.done()
    return task.result()


Verb = Callable[[Client], Awaitable[Any]]
VERBS: dict[str, Verb] = {
    "get": lambda c: c.get(NetworkAttachment, "ns", "a"),
    "create": lambda c: c.create(na()),
    "update": lambda c: c.update(na()),
    "patch": lambda c: c.patch(NetworkAttachment, "ns", "a", {"metadata": {"labels": {"x": "y"}}}),
    "delete": lambda c: c.delete(NetworkAttachment, "ns", "a"),
}


@pytest.mark.parametrize("verb", VERBS)
async def test_every_verb_waits_as_told_and_tries_again(verb: str) -> None:
    clock = FakeClock()
    mock = MockTransport(Script([busy("2"), busy("1", 503)], json_response(na())))
    c = Client("http://x", transport=mock, clock=clock)
    got = await waits(clock, VERBS[verb](c), [2.0, 1.0])
    assert got.metadata.name == "a"
    assert len(mock.requests) == 3
    assert len({(r.method, r.path, r.body) for r in mock.requests}) == 1  # the same request each time


async def test_a_wait_is_bounded_and_retries_end() -> None:
    clock = FakeClock()
    mock = MockTransport(Script([], busy("3600")))
    c = Client("http://x", transport=mock, clock=clock)
    with pytest.raises(TooManyRequests):
        await waits(clock, c.get(NetworkAttachment, "ns", "a"), [RETRY_AFTER_MAX] * MAX_RETRIES)
    assert len(mock.requests) == MAX_RETRIES + 1


@pytest.mark.parametrize(
    "answer",
    [busy(None), busy("Fri, 31 Dec 1999 23:59:59 GMT"), busy("soon"), status_response(Conflict("stale"))],
    ids=["429-without-retry-after", "an-http-date", "not-a-number", "409"],
)
async def test_other_errors_are_not_retried(answer: Response) -> None:
    clock = FakeClock()
    mock = MockTransport(Script([answer], json_response(na())))
    c = Client("http://x", transport=mock, clock=clock)
    with pytest.raises(StatusError):
        await c.get(NetworkAttachment, "ns", "a")
    assert len(mock.requests) == 1 and clock.pending == 0


async def test_a_refused_watch_is_opened_again_after_the_wait() -> None:
    clock = FakeClock()
    mock = MockTransport(Script([busy("4")], Stream([event("ADDED", na("w"))])))
    c = Client("http://x", transport=mock, clock=clock)

    async def events() -> list[str]:
        return [ev.object.metadata.name async for ev in c.watch(NetworkAttachment, "ns")]

    assert await waits(clock, events(), [4.0]) == ["w"]
    assert [r.is_watch for r in mock.requests] == [True, True]


def test_the_rule() -> None:
    assert retry_after(429, {b"retry-after": b"1"}) == 1.0
    assert retry_after(503, {b"retry-after": b"0"}) == 0.0
    assert retry_after(504, {b"retry-after": b"1"}) is None  # ResourceVersionTooLarge: the reflector lists again
    assert retry_after(503, {b"retry-after": b"-5"}) == 0.0
    assert retry_after(429, {b"retry-after": b"11"}) == RETRY_AFTER_MAX
    assert retry_after(409, {b"retry-after": b"1"}) is None
    assert retry_after(429, {}) is None
    assert retry_after(429, {b"retry-after": b"9" * 40}) is None
