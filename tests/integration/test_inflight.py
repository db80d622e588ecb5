"""Overload protection: past `--max-requests-inflight` / `--max-mutating-requests-inflight` a call is answered
429 with `Retry-After: 1` and a TooManyRequests `Status`, without being served; watches and probes are not
counted; a flood whose clients retry after `Retry-After` is served in full.

Calls are held in flight deterministically: the server's resource handler is wrapped so that every call waits
for an event the test sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import Subnet, SubnetSpec
from kos.apiserver.auth.user import SYSTEM_MASTERS, UNSECURED, UserInfo
from kos.apiserver.inflight import MUTATING, READ_ONLY, TOO_MANY, InFlight
from kos.apiserver.metrics import APIServerMetrics
from kos.apiserver.routes import Routes
from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.http.messages import Request, Response
from kos.testing.apiserver import running_apiserver
from kos.testing.http import subnet
from kos.testing.wait import eventually

GV = "/apis/network.example.com/v1alpha1"
SUBNETS = f"{GV}/namespaces/ns/subnets"


class Held:
    """Wraps the server's resource handler: every call waits for `release` before it is served."""

    def __init__(self, routes: Routes) -> None:
        self.api = routes.api
        self.release = asyncio.Event()
        self.entered = 0
        routes.api = self  # type: ignore[assignment]

    async def serve(self, request: Request, tail: str, user: UserInfo) -> Response:
        self.entered += 1
        await self.release.wait()
        return await self.api.serve(request, tail, user)


def routes_of(server: APIServer) -> Routes:
    assert server.http is not None
    app = server.http.app
    assert isinstance(app, Routes)
    return app


def dropped(server: APIServer, kind: str) -> float:
    return server.metrics.dropped.labels(kind)._value.get()  # type: ignore[no-any-return]


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with running_apiserver(max_requests_inflight=3, max_mutating_requests_inflight=2) as s:
        yield s


async def test_past_the_caps_calls_get_429_and_watches_and_probes_do_not_count(server: APIServer) -> None:
    held = Held(routes_of(server))
    async with aiohttp.ClientSession(server.url) as http:
        reads = [asyncio.create_task(http.get(SUBNETS)) for _ in range(3)]
        await eventually(lambda: held.entered == 3)
        async with http.get(SUBNETS) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "1"
            status = await r.json()
        assert status["kind"] == "Status" and status["reason"] == "TooManyRequests"
        assert status["message"] == "Too many requests, please try again later."
        assert status["details"]["retryAfterSeconds"] == 1
        async with http.get("/version") as r:  # a document counts as a read too
            assert r.status == 429
        writes = [asyncio.create_task(http.post(SUBNETS, json=subnet(f"s{i}", 100 + i, f"10.{i}.0.0/24")))
                  for i in range(2)]  # fmt: skip
        await eventually(lambda: held.entered == 5)  # mutating calls have their own cap
        async with http.post(SUBNETS, json=subnet("s9", 109, "10.9.0.0/24")) as r:
            assert r.status == 429
        assert held.entered == 5  # refused calls were not served
        async with http.get(SUBNETS, params={"watch": "true", "timeoutSeconds": "1"}) as r:
            assert r.status == 200  # a watch is not counted
        async with http.get("/healthz") as r:
            assert r.status == 200
        assert (dropped(server, "readOnly"), dropped(server, "mutating")) == (2, 1)
        held.release.set()
        for t in reads:
            assert (await t).status == 200
        for t in writes:
            assert (await t).status == 201
        assert routes_of(server).inflight.counts == [0, 0]
        async with http.get(SUBNETS) as r:
            assert r.status == 200


async def flooder(http: aiohttp.ClientSession, refusals: list[int]) -> int:
    """GET until served, waiting `Retry-After` seconds after each 429 (as client-go does); the final status."""
    while True:
        async with http.get(SUBNETS) as r:
            if r.status != 429:
                return r.status
            refusals.append(1)
            await asyncio.sleep(float(r.headers["Retry-After"]))


async def test_a_flood_that_honours_retry_after_is_served_in_full() -> None:
    async with running_apiserver(max_requests_inflight=2) as server:
        held = Held(routes_of(server))
        refusals: list[int] = []
        async with aiohttp.ClientSession(server.url) as http:
            flood = [asyncio.create_task(flooder(http, refusals)) for _ in range(12)]
            await eventually(lambda: held.entered == 2 and len(refusals) >= 10)
            held.release.set()
            assert await asyncio.wait_for(asyncio.gather(*flood), 30) == [200] * 12
        assert held.entered == 12
        assert dropped(server, "readOnly") == len(refusals) >= 10


def test_system_masters_are_served_past_the_cap_on_a_secure_server_only() -> None:
    lim = InFlight(1, 0, APIServerMetrics())
    assert lim.caps[READ_ONLY] == 1
    assert lim.caps[MUTATING] > 1 << 40  # 0: no cap
    admin = UserInfo("admin", groups=(SYSTEM_MASTERS,))
    assert lim.refuse(admin, READ_ONLY) is None
    assert lim.refuse(UNSECURED, READ_ONLY) is TOO_MANY  # on --insecure everyone is a master
    assert lim.refuse(UserInfo("bob", groups=("kos:users",)), MUTATING) is TOO_MANY


async def test_kos_clients_honour_retry_after_until_a_flood_is_served() -> None:
    """The same flood through kos' own `Client`: it retries each 429 after `Retry-After` by itself, so every
    call returns normally (the server refused some of them first)."""
    async with running_apiserver(max_mutating_requests_inflight=2) as server:
        held = Held(routes_of(server))
        client = Client(server.url)
        try:
            objs = [Subnet(metadata=ObjectMeta(name=f"s{i}", namespace="ns"), spec=SubnetSpec(vni=100 + i,
                    ipv4=f"10.{i}.0.0/16")) for i in range(8)]  # fmt: skip
            flood = [asyncio.create_task(client.create(o)) for o in objs]
            await eventually(lambda: held.entered == 2 and dropped(server, "mutating") >= 6)
            held.release.set()
            created = await asyncio.wait_for(asyncio.gather(*flood), 30)
        finally:
            await client.close()
        assert sorted(s.metadata.name for s in created) == [f"s{i}" for i in range(8)]
        assert held.entered == 8
