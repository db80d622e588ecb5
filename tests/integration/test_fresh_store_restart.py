"""An apiserver restarted on a fresh store, at a revision below its clients' (kubernetes #91073).

When a store is behind its clients (an etcd restored from a backup without
`--bump-revision`, or `memory://?revision=1`), every client's last revision is from
the future: watching from it gets 504 with the cause `ResourceVersionTooLarge`, and
retrying it would wait forever. (A fresh memory:// or SQLite store starts at the
clock, above every earlier revision, so clients get 410 and relist.)
The reflector must relist from the current state instead, so an informer sees
the objects of the new store promptly — over plain HTTP watches and over the
watch multiplexer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kos.api import errors
from kos.api.meta import ObjectMeta
from kos.api.types import Subnet, SubnetSpec
from kos.client.informer import Informer
from kos.client.rest import Client
from kos.testing.apiserver import running_apiserver
from kos.testing.http import RawAPI
from kos.testing.process import APIServerProcess, free_port
from kos.testing.wait import eventually

NS = "fresh"


def sn(name: str, vni: int) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4=f"10.{vni}.0.0/24"))


async def test_a_future_resource_version_is_504_with_the_cause_kube_apiserver_gives() -> None:
    """A revision the store has never reached is refused at once, with kube-apiserver's Status.

    kube-apiserver waits up to 3 s first; a revision above the store's own cannot come (the client
    has it from a replaced store), and while a watch waited the new store could pass it and the
    watch would be accepted, skipping what the new store held before. Nothing is left waiting.
    """
    async with running_apiserver("memory://?revision=1") as server, RawAPI(server.url) as api:
        path = RawAPI.path("subnets", NS)
        assert server.cacher is not None
        replies = await asyncio.wait_for(
            asyncio.gather(
                api.get(path, params={"resourceVersion": "999"}),
                api.get(path, params={"resourceVersion": "999", "resourceVersionMatch": "NotOlderThan"}),
                api.get(path, params={"resourceVersion": "999", "resourceVersionMatch": "Exact"}),
                api.get(path + "/x", params={"resourceVersion": "999"}),
                api.get(path, params={"watch": "1", "resourceVersion": "999"}),
            ),
            timeout=2.5,  # a liveness bound: well below the 3 s a cache that lags would be waited for
        )
        assert not server.cacher._waiters
        for r in replies:
            assert r.status == 504, r.body
            assert r.headers.get("Retry-After") == "1"
            assert r.body["reason"] == "Timeout" and r.body["code"] == 504
            assert r.body["message"].startswith("Timeout: Too large resource version: 999, current: ")
            assert r.body["details"] == {
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            }


@pytest.mark.parametrize("behind", [False, True], ids=["fresh-store", "store-behind"])
@pytest.mark.parametrize("watch_mux", [False, True], ids=["http-watch", "watch-mux"])
async def test_an_informer_relists_after_the_server_restarts_on_a_fresh_store(
    watch_mux: bool, behind: bool, tmp_path: Path
) -> None:
    """A fresh `memory://` store starts above every earlier revision (the clock): the informer's revision is
    compacted history there (410, relist). A store behind its clients (`memory://?revision=1`, an etcd restored
    without --bump-revision): the informer's revision is from its future (504 ResourceVersionTooLarge, relist)."""
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}", watch_mux=watch_mux)
    informer: Informer[Subnet] = Informer(client, Subnet)  # type: ignore[arg-type]
    informer.reflector.max_backoff = 0.5
    server = APIServerProcess("memory://", tmp_path / "first.log", port=port).wait_ready()
    try:
        async with Client(server.url) as setup:
            for i in range(30):  # push the revision well above what a store behind its clients will reach
                await setup.create(sn(f"old-{i}", 100 + i))
        informer.start()
        await informer.wait_synced(10)
        stale = int(informer.reflector.resource_version)
        assert len(informer.lister.list()) == 30
        # the server dies; a new one on a fresh store takes its place
        server.kill()
        server = APIServerProcess("memory://?revision=1" if behind else "memory://", tmp_path / "second.log",
                                  port=port).wait_ready()  # fmt: skip
        async with Client(server.url) as setup:
            fresh = [await setup.create(sn(f"new-{i}", 200 + i)) for i in range(2)]
            assert (int(fresh[-1].metadata.resource_version) < stale) == behind
            await eventually(lambda: sorted(o.metadata.name for o in informer.lister.list()) == ["new-0", "new-1"],
                             timeout=20)  # fmt: skip
            if behind:
                assert informer.reflector.too_large_relists >= 1
            # and it follows the new store from there
            await setup.create(sn("new-2", 202))
            await eventually(lambda: informer.lister.get(NS, "new-2") is not None, timeout=10)
    finally:
        await informer.stop()
        await client.close()
        server.stop()


def test_too_large_is_recognised_only_with_its_cause() -> None:
    assert errors.is_too_large_resource_version(errors.too_large_resource_version(5, 3))
    assert not errors.is_too_large_resource_version(errors.Timeout("timed out waiting for the watch cache"))
    assert not errors.is_too_large_resource_version(TimeoutError())
