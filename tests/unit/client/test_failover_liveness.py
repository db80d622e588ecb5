"""`FailoverTransport`'s liveness probe: a hung server (connections accepted, nothing answered) is left in seconds.

A stopped apiserver's kernel accepts connections and answers TCP keepalive, so only asking the server
itself tells a hung one from a slow call. `probe_after` runs on a `FakeClock`; the probe's own bound is
real time (it bounds I/O), kept at 50 ms here.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from kos.client.failover import FailoverTransport
from kos.http.clientresponse import ConnectionFailed, Response
from kos.testing.clock import FakeClock
from kos.testing.transport import MockTransport, Request, Stream

OK = Response(200, b"{}")
PROBE_TIMEOUT = 0.05


async def forever(_: Request) -> Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def ok(_: Request) -> Response:
    return OK


def transport(*handlers: object) -> tuple[FailoverTransport, list[MockTransport], FakeClock]:
    mocks = [MockTransport(h) for h in handlers]  # type: ignore[arg-type]
    clock = FakeClock()
    t = FailoverTransport(mocks, [f"http://s{i}" for i in range(len(mocks))], clock=clock, rng=random.Random(1),
                          probe_after=1.5, probe_timeout=PROBE_TIMEOUT)  # fmt: skip
    return t, mocks, clock


async def until_done(clock: FakeClock, call: asyncio.Future[Response], rounds: int = 20) -> None:
    """Move the fake clock past each probe_after and backoff, letting each real-time probe bound pass."""
    for _ in range(rounds):
        if call.done():
            return
        await clock.advance(1.5)
        await asyncio.sleep(PROBE_TIMEOUT * 2)
    raise AssertionError("the call did not end")


def livez(m: MockTransport) -> int:
    return sum(r.path == "/livez" for r in m.requests)


async def test_a_write_to_a_hung_server_ends_as_maybe_applied_and_is_not_sent_again() -> None:
    t, (a, b), clock = transport(forever, ok)
    call = asyncio.ensure_future(t.request("POST", "/x", body=b"{}"))
    await until_done(clock, call)
    with pytest.raises(ConnectionFailed, match="hung; the call may have been applied") as e:
        call.result()
    assert not e.value.retryable
    assert (livez(a), t.hung, t.server) == (1, 1, "http://s1")
    assert b.requests == []  # a write that may have been applied is not repeated
    assert await t.request("POST", "/y", body=b"{}") is OK  # the next call goes to the live server


async def test_a_get_to_a_hung_server_is_answered_by_the_next() -> None:
    t, (a, b), clock = transport(forever, ok)
    call = asyncio.ensure_future(t.request("GET", "/x"))
    await until_done(clock, call)
    assert call.result() is OK
    assert [r.path for r in b.requests] == ["/x"] and livez(a) == 1


async def test_a_slow_call_on_a_live_server_goes_on_waiting() -> None:
    answer = asyncio.Event()

    async def slow(req: Request) -> Response:
        if req.path == "/livez":
            return OK
        await answer.wait()
        return Response(201, b"{}")

    t, (a, b), clock = transport(slow, ok)
    call = asyncio.ensure_future(t.request("POST", "/x", body=b"{}"))
    for _ in range(3):
        await clock.advance(1.5)
        await asyncio.sleep(0)
    assert not call.done() and livez(a) == 3
    answer.set()
    assert (await call).status == 201
    assert (t.hung, t.failovers, b.requests) == (0, 0, [])


async def test_calls_stuck_on_one_server_share_one_probe() -> None:
    t, (a, _), clock = transport(forever, ok)
    calls = [asyncio.ensure_future(t.request("POST", f"/x{n}", body=b"{}")) for n in range(5)]
    for c in calls:
        await until_done(clock, c)
    assert all(isinstance(c.exception(), ConnectionFailed) for c in calls)
    assert livez(a) == 1 and t.failovers == 1


def test_one_server_is_never_probed() -> None:
    assert FailoverTransport([MockTransport(ok)], ["http://s0"]).probe_after is None


def watch_then_quiet(livez: object) -> object:
    def handler(req: Request) -> object:
        if req.path == "/livez":
            return livez(req)  # type: ignore[operator]
        return Stream([b'{"type":"ADDED"}'], hang=True)

    return handler


async def next_or_fail(clock: FakeClock, stream: object) -> asyncio.Future[object]:
    fut = asyncio.ensure_future(anext(stream))  # type: ignore[call-overload]
    await until_done(clock, fut)  # type: ignore[arg-type]
    return fut


async def test_a_plain_watch_on_a_hung_server_ends_and_the_next_watch_goes_elsewhere() -> None:
    """A hung server's kernel answers keepalive, so a quiet plain-HTTP watch would wait forever."""
    t, (a, _), clock = transport(watch_then_quiet(forever), ok)
    stream = t.stream("/w", query={"watch": "1"})
    assert await anext(stream) == [b'{"type":"ADDED"}']
    ended = await next_or_fail(clock, stream)
    with pytest.raises(ConnectionFailed, match="hung; the watch ends"):
        ended.result()
    assert (livez(a), t.hung, t.server) == (1, 1, "http://s1")


async def test_a_quiet_watch_on_a_live_server_stays_open_and_probes_at_most_once_per_interval() -> None:
    t, (a, _), clock = transport(watch_then_quiet(ok), ok)
    streams = [t.stream("/w", query={"watch": "1"}) for _ in range(5)]
    for s in streams:
        assert await anext(s) == [b'{"type":"ADDED"}']
    waits = [asyncio.ensure_future(anext(s)) for s in streams]  # type: ignore[arg-type]
    for _ in range(4):
        await clock.advance(1.5)
        await asyncio.sleep(0.01)
    assert not any(w.done() for w in waits)
    assert 1 <= livez(a) <= 4  # one probe per interval for the five watches, not one each
    assert t.hung == 0 and t.server == "http://s0"
    for w in waits:
        w.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    for s in streams:
        await s.aclose()  # type: ignore[attr-defined]
