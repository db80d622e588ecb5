"""A continue token whose snapshot has expired: 410 with a token that goes on (kubernetes #66981).

kube-apiserver answers an expired continue token with 410 Expired whose message
offers "the continue token in this response", and puts that token in the
Status's `metadata.continue`: it lists the remaining keys from the current
revision (an inconsistent list, as the message says), and the pages after it are
consistent with that revision. kos used to promise the token and send none.
The Python client either lists everything again (one snapshot, as client-go's
pager does) or, when the caller accepts it, follows the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from kos.api.types import NetworkAttachment
from kos.apiserver.paging import INCONSISTENT_CONTINUE
from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.testing.apiserver import running_apiserver
from kos.testing.http import RawAPI, attachment

NS = "paging"
NA = RawAPI.path("networkattachments", NS)


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with running_apiserver(watch_cache_size=100) as s:  # a short history: tokens expire quickly
        yield s


async def expire_history(api: RawAPI) -> None:
    """More writes than the cache keeps (it trims at twice its size), so every earlier snapshot is gone."""
    for i in range(250):
        r = await api.patch(NA + "/a5", {"metadata": {"labels": {"n": str(i)}}})
        assert r.status == 200


def names(body: dict[str, Any]) -> list[str]:
    return [i["metadata"]["name"] for i in body["items"]]


async def test_expired_continue_gets_410_with_a_token_that_goes_on(server: APIServer) -> None:
    async with RawAPI(server.url) as api:
        for i in range(6):
            assert (await api.post(NA, attachment(f"a{i}", "n", "s"))).status == 201
        p1 = await api.get(NA, params={"limit": "2"})
        assert names(p1.body) == ["a0", "a1"]
        token = p1.body["metadata"]["continue"]
        # meanwhile: a3 goes, a45 comes, and the history of the first page's revision is gone
        assert (await api.delete(NA + "/a3")).status == 200
        assert (await api.post(NA, attachment("a45", "n", "s"))).status == 201
        await expire_history(api)

        gone = await api.get(NA, params={"limit": "2", "continue": token})
        assert gone.status == 410 and gone.body["reason"] == "Expired" and gone.body["code"] == 410
        assert gone.body["message"] == INCONSISTENT_CONTINUE
        fresh = gone.body["metadata"]["continue"]
        assert fresh and fresh != token

        # the fresh token lists the remaining keys as they are now, then consistently with that revision
        p2 = await api.get(NA, params={"limit": "2", "continue": fresh})
        assert p2.status == 200, p2.body
        assert names(p2.body) == ["a2", "a4"]
        now = (await api.get(NA, params={"limit": "1"})).body["metadata"]["resourceVersion"]
        assert p2.body["metadata"]["resourceVersion"] == now
        assert (await api.patch(NA + "/a5", {"metadata": {"labels": {"n": "late"}}})).status == 200
        p3 = await api.get(NA, params={"limit": "2", "continue": p2.body["metadata"]["continue"]})
        assert names(p3.body) == ["a45", "a5"] and not p3.body["metadata"].get("continue")
        assert p3.body["metadata"]["resourceVersion"] == now
        assert p3.body["items"][1]["metadata"]["labels"] == {"n": "249"}  # the snapshot of p2, not the late write

        # it is a continue token like any other: not with a resourceVersion
        bad = await api.get(NA, params={"limit": "2", "continue": fresh, "resourceVersion": "5"})
        assert bad.status == 400 and "continue" in bad.body["message"]


class _WritesBetweenPages(Client):
    """A client that, after its first list page, lets the snapshot expire (as a slow reader would)."""

    def __init__(self, url: str, api: RawAPI) -> None:
        super().__init__(url)
        self.api = api
        self.requests: list[dict[str, str]] = []

    async def _request(self, method: str, path: str, *, params: dict[str, str] | None = None, **kw: Any) -> bytes:
        self.requests.append(dict(params or {}))
        data = await super()._request(method, path, params=params, **kw)
        if len(self.requests) == 1:
            await self.api.delete(NA + "/a3")
            await self.api.post(NA, attachment("a45", "n", "s"))
            await expire_history(self.api)
        return data


@pytest.mark.parametrize("inconsistent_ok", [False, True])
async def test_the_client_lists_again_or_follows_the_token(server: APIServer, inconsistent_ok: bool) -> None:
    async with RawAPI(server.url) as api:
        for i in range(6):
            assert (await api.post(NA, attachment(f"a{i}", "n", "s"))).status == 201
        async with _WritesBetweenPages(server.url, api) as client:
            items, rv = await client.list(NetworkAttachment, NS, limit=2, inconsistent_ok=inconsistent_ok)
            now = (await api.get(NA)).body["metadata"]["resourceVersion"]
            got = [o.metadata.name for o in items]
            # page 1 (a0 a1) from before; the 410; then either everything again or the rest as it is now
            assert "continue" in client.requests[1]
            if inconsistent_ok:
                assert got == ["a0", "a1", "a2", "a4", "a45", "a5"]
                assert [("continue" in p, p.get("limit")) for p in client.requests[2:]] == [(True, "2")] * 2
            else:
                assert got == ["a0", "a1", "a2", "a4", "a45", "a5"]  # one snapshot: the current one
                assert client.requests[2] == {}  # everything again, in one request (client-go's pager)
                assert len(client.requests) == 3
            assert rv == now
