"""`FailoverTransport`: which failures move to the next server, which calls are sent again, and the backoff.

The servers are `MockTransport`s (no sockets); the backoff sleeps on a `FakeClock`, so each wait is checked
against the seeded jitter drawn for it, never against real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from kos.client.failover import BACKOFF_BASE, BACKOFF_CAP, FailoverTransport
from kos.http.clientpool import HTTPPool
from kos.http.clientresponse import ConnectionFailed, Response, StreamRefused
from kos.testing.clock import FakeClock
from kos.testing.transport import MockTransport, Request, Stream

OK = Response(200, b"{}")


def refused(_: Request) -> Response:
    raise ConnectionFailed("cannot connect: refused", retryable=True)


def reset_after_sending(_: Request) -> Response:
    raise ConnectionFailed("connection closed by the server: reset")


def timed_out(_: Request) -> Response:
    raise TimeoutError("no response within 1s")


def ok(_: Request) -> Response:
    return OK


def failover(*handlers: object, seed: int = 1) -> tuple[FailoverTransport, list[MockTransport], FakeClock]:
    mocks = [MockTransport(h) for h in handlers]  # type: ignore[arg-type]
    clock = FakeClock()
    t = FailoverTransport(mocks, [f"http://s{i}" for i in range(len(mocks))], clock=clock, rng=random.Random(seed))
    return t, mocks, clock


async def finish(clock: FakeClock, call: asyncio.Task[Response]) -> Response:
    """Run `call`, moving the fake clock on by the longest backoff whenever it waits."""
    while not call.done():
        await clock.settle()
        if not call.done():
            await clock.advance(BACKOFF_CAP)
    return call.result()


async def test_a_refused_call_goes_to_the_next_server_after_a_jittered_wait() -> None:
    t, (a, b), clock = failover(refused, ok, seed=3)
    expected = random.Random(3).uniform(0.0, BACKOFF_BASE)
    call = asyncio.create_task(t.request("POST", "/x", body=b"{}"))
    await clock.settle()
    assert len(a.requests) == 1 and not b.requests  # waiting out its backoff
    await clock.advance(expected * 0.99)
    assert not b.requests
    await clock.advance(expected * 0.02)
    assert (await call).status == 200
    assert len(b.requests) == 1 and t.server == "http://s1" and t.failovers == 1
    # the next call goes straight to the server that answered
    assert (await t.request("GET", "/y")).status == 200
    assert len(a.requests) == 1 and len(b.requests) == 2 and t.failures == 0


@pytest.mark.parametrize("handler", [reset_after_sending, timed_out])
async def test_a_write_that_may_have_reached_the_server_is_not_sent_again(handler: object) -> None:
    t, (a, b), _ = failover(handler, ok)
    with pytest.raises((ConnectionFailed, TimeoutError)):
        await t.request("POST", "/x", body=b"{}")
    assert len(a.requests) == 1 and not b.requests
    assert t.server == "http://s1"  # but the next call goes elsewhere
    assert (await t.request("POST", "/x", body=b"{}")).status == 200 and len(b.requests) == 1


@pytest.mark.parametrize("handler", [reset_after_sending, timed_out, refused])
async def test_a_read_is_sent_again_whatever_happened(handler: object) -> None:
    t, (a, b), clock = failover(handler, ok)
    assert (await finish(clock, asyncio.create_task(t.request("GET", "/x")))).status == 200
    assert len(a.requests) == 1 and len(b.requests) == 1


async def test_every_server_failing_raises_the_last_failure_after_trying_each_once() -> None:
    t, mocks, clock = failover(refused, refused, refused)
    call = asyncio.create_task(t.request("GET", "/x"))
    while not call.done():
        await clock.settle()
        await clock.advance(BACKOFF_CAP)
    with pytest.raises(ConnectionFailed):
        call.result()
    assert [len(m.requests) for m in mocks] == [1, 1, 1]


async def test_a_503_is_returned_and_the_next_call_goes_elsewhere() -> None:
    t, (a, b), _ = failover(lambda _: Response(503, b"shutting down", {b"retry-after": b"1"}), ok)
    assert (await t.request("POST", "/x", body=b"{}")).status == 503
    assert len(a.requests) == 1 and not b.requests and t.server == "http://s1"
    assert (await t.request("POST", "/x", body=b"{}")).status == 200 and len(a.requests) == 1


async def test_concurrent_failures_on_one_server_move_on_once() -> None:
    """Ten calls refused by s0 at once all land on s1, not spread over s1 and s2 (nor back on s0)."""
    gate = asyncio.Event()

    async def refused_together(r: Request) -> Response:
        await gate.wait()
        return refused(r)

    t, (a, b, c), clock = failover(refused_together, ok, ok)
    calls = [asyncio.create_task(t.request("GET", f"/{i}")) for i in range(10)]
    await clock.settle()
    assert len(a.requests) == 10  # all ten in flight on s0
    gate.set()
    for call in calls:
        await finish(clock, call)
    assert len(a.requests) == 10 and len(b.requests) == 10 and not c.requests and t.failovers == 1


def test_the_backoff_is_full_jitter_bounded_and_repeatable() -> None:
    """uniform(0, min(cap, base·2^(n−1))) for the n-th consecutive failure; the same seed, the same waits."""

    def waits(seed: int) -> list[float]:
        t = FailoverTransport([MockTransport(ok)], ["http://s0"], rng=random.Random(seed))
        out = []
        for n in range(1, 12):
            t.failures = n
            out.append(t.backoff())
        return out

    first = waits(42)
    assert first == waits(42) and first != waits(43)
    for n, w in enumerate(first, 1):
        assert 0.0 <= w <= min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (n - 1))
    assert max(first[5:]) > BACKOFF_BASE * 4  # it does grow (to the cap): not a constant small wait


async def test_a_watch_refused_before_its_first_event_moves_on_and_one_broken_later_ends() -> None:
    t, (a, b), clock = failover(refused, lambda _: Stream([b'{"type":"BOOKMARK"}'], then=ConnectionFailed("reset")))

    async def read() -> list[list[bytes]]:
        got = []
        async for lines in t.stream("/apis/x/things", query={"watch": "1"}):
            got.append(lines)
        return got

    task = asyncio.create_task(read())
    while not task.done():
        await clock.settle()
        await clock.advance(BACKOFF_CAP)
    with pytest.raises(ConnectionFailed):
        task.result()  # broken after an event: not resumed here (the reflector resumes from its revision)
    assert len(a.requests) == 1 and len(b.requests) == 1
    assert t.server == "http://s0"  # the resumed watch goes to the next server again


async def test_a_watch_answered_503_moves_on() -> None:
    t, (a, b), clock = failover(lambda _: Response(503, b"shutting down"), lambda _: Stream([b"line"]))

    async def read() -> list[list[bytes]]:
        return [lines async for lines in t.stream("/apis/x/things")]

    task = asyncio.create_task(read())
    while not task.done():
        await clock.settle()
        await clock.advance(BACKOFF_CAP)
    assert task.result() == [[b"line"]]
    assert len(a.requests) == 1 and len(b.requests) == 1
    other, _, _ = failover(lambda _: Response(404, b"no"), ok)
    with pytest.raises(StreamRefused):
        async for _ in other.stream("/apis/x/things"):
            pass
    assert other.server == "http://s0"  # a 404 is an answer, not a failed server


def test_it_needs_one_name_per_transport() -> None:
    with pytest.raises(ValueError):
        FailoverTransport([MockTransport(ok)], [])


async def test_a_post_on_a_reused_connection_to_a_server_that_died_is_not_sent_to_the_next() -> None:
    """The pooled connection breaks with no answer, then the server refuses: the POST may have been applied
    before it died, so the pool's one retry failing leaves a ConnectionFailed that is not `retryable`."""
    heads: list[bytes] = []

    async def answer_once_then_die(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError):
            heads.append(await reader.readuntil(b"\r\n\r\n"))
        server.close()  # stops listening: the pool's retry is refused
        writer.close()

    server = await asyncio.start_server(answer_once_then_die, "127.0.0.1", 0)
    pool = HTTPPool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    try:
        assert (await pool.request("GET", "/a")).status == 200
        with pytest.raises(ConnectionFailed) as e:
            await pool.request("POST", "/b", body=b"{}")
        assert not e.value.retryable and heads[1].startswith(b"POST /b")
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
