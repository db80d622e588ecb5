"""A silent apiserver (no FIN, no RST, nothing answered) is noticed within 5 s and its clients move on.

The silence is a `kos.testing.silentproxy.SilentProxy` between the client and replica A: it stops
forwarding without closing. The waits in these tests are real time, bounded by the client's own
timeouts — a 2 s call timeout, the watch multiplexer's 2 s ping (`kos.client.watchmux.HEARTBEAT`) — so each
test waits about 2–4 s; the `eventually` bounds (6 s) are liveness bounds, not measurements. Linux TCP
keepalive (kos.http.clientkeepalive) is checked by its socket options: a user-space proxy's kernel answers
keepalive probes itself, so only a real packet loss could show it act.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kos.api.errors import StatusError
from kos.api.meta import ObjectMeta
from kos.api.resources import BY_TYPE
from kos.api.types import Subnet, SubnetSpec
from kos.apiserver.server import APIServer
from kos.client.config import ClientConfig
from kos.client.failover import FailoverTransport
from kos.client.indexer import Indexer
from kos.client.reflector import Reflector
from kos.client.rest import Client
from kos.client.watchmux import WatchMux
from kos.http import clientkeepalive
from kos.http.clientpool import HTTPPool
from kos.testing.replicas import running_replicas
from kos.testing.silentproxy import SilentProxy
from kos.testing.wait import eventually

NS = "silent"


def sn(name: str, vni: int) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4=f"10.{vni}.0.0/24"))


@pytest.fixture
async def replicas() -> AsyncIterator[list[APIServer]]:
    async with running_replicas(2) as servers:
        yield servers


def keepalive_options(sock: Any) -> tuple[int, int, int, int, int]:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )


async def test_every_client_connection_has_keepalive_within_the_bound(replicas: list[APIServer]) -> None:
    want = (1, clientkeepalive.IDLE, clientkeepalive.INTERVAL, clientkeepalive.COUNT, clientkeepalive.USER_TIMEOUT_MS)
    assert (
        clientkeepalive.IDLE + clientkeepalive.COUNT * clientkeepalive.INTERVAL <= 5
        and clientkeepalive.USER_TIMEOUT_MS <= 5000
    )
    async with Client(replicas[0].url, watch_mux=True) as client:
        mux = client.transport
        assert isinstance(mux, WatchMux)
        pool = mux.inner
        assert isinstance(pool, HTTPPool)
        await client.create(sn("k", 100))
        call_conn = pool._idle[-1]
        assert call_conn.transport is not None
        assert keepalive_options(call_conn.transport.get_extra_info("socket")) == want
        events = client.watch(Subnet, NS)
        assert (await anext(events)).object.metadata.name == "k"
        assert mux._ws is not None
        assert keepalive_options(mux._ws.get_extra_info("socket")) == want
        await events.aclose()
    async with Client(replicas[0].url) as plain:
        stream = plain.transport.stream(Client.path(BY_TYPE[Subnet], NS), query={"watch": "1"})
        first = asyncio.ensure_future(anext(stream))
        assert isinstance(plain.transport, HTTPPool)
        await eventually(lambda: bool(plain.transport._streams))  # type: ignore[union-attr]
        (watch_conn,) = plain.transport._streams  # type: ignore[union-attr]
        assert watch_conn.transport is not None
        assert keepalive_options(watch_conn.transport.get_extra_info("socket")) == want
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await stream.aclose()


async def test_a_call_to_a_silent_server_times_out_and_is_answered_by_the_next(replicas: list[APIServer]) -> None:
    a, b = replicas
    async with (
        SilentProxy("127.0.0.1", a.port) as proxy,
        Client(ClientConfig.for_server(f"{proxy.url},{b.url}"), timeout=2.0) as client,
    ):
        created = await client.create(sn("s0", 100))  # through the proxy, to A
        transport = client.transport
        assert isinstance(transport, FailoverTransport) and transport.server == proxy.url
        proxy.silence()
        got = await client.get(Subnet, NS, "s0")  # times out on A (2 s), then B answers
        assert got.metadata.uid == created.metadata.uid
        assert transport.server == b.url and transport.failovers == 1


async def test_a_multiplexed_watch_on_a_silent_server_resumes_on_the_next_without_a_relist(
    replicas: list[APIServer],
) -> None:
    a, b = replicas
    seen: list[str] = []

    def on_event(typ: str, old: Subnet | None, new: Subnet | None) -> None:
        obj = new or old
        assert obj is not None
        seen.append(f"{typ} {obj.metadata.name}")

    async with (
        SilentProxy("127.0.0.1", a.port) as proxy,
        Client(ClientConfig.for_server(f"{proxy.url},{b.url}"), timeout=2.0, watch_mux=True) as client,
        Client(b.url) as writer,
    ):
        reflector: Reflector[Subnet] = Reflector(client, Subnet, Indexer(), on_event, namespace=NS)
        reflector.initial_backoff = 0.01
        task = asyncio.create_task(reflector.run())
        try:
            await writer.create(sn("before", 100))
            await eventually(lambda: seen == ["ADDED before"])
            proxy.silence()
            await writer.create(sn("after", 101))  # written while the watch's server is silent
            await eventually(lambda: seen == ["ADDED before", "ADDED after"], timeout=6.0)
            assert reflector.relists == 1
            transport = client.transport
            assert isinstance(transport, FailoverTransport) and transport.server == b.url
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_write_to_a_silent_server_ends_as_maybe_applied_long_before_its_timeout(
    replicas: list[APIServer],
) -> None:
    """The call's own timeout is 60 s; the liveness probe (kos.client.failover) ends it in ~3.5 s. The 10 s
    bound is liveness, not a measurement: without the probe the write would wait its whole minute."""
    a, b = replicas
    async with (
        SilentProxy("127.0.0.1", a.port) as proxy,
        Client(ClientConfig.for_server(f"{proxy.url},{b.url}")) as client,
    ):
        await client.create(sn("w0", 100))
        transport = client.transport
        assert isinstance(transport, FailoverTransport) and transport.server == proxy.url
        proxy.silence()
        with pytest.raises(StatusError) as e:
            await asyncio.wait_for(client.create(sn("w1", 101)), timeout=10.0)
        assert e.value.code == 503 and "may have been applied" in e.value.message
        assert transport.server == b.url and transport.hung == 1
        created = await client.create(sn("w2", 102))  # the next write is answered by B
        assert created.metadata.name == "w2"
