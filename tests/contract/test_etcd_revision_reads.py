"""EtcdStore.current_revision shares one `Range` among concurrent callers, and stays a read after each call.

The apiserver reads the current revision before every update and delete (Cacher.sync); sharing the
request halves its round trips under load (docs/performance.md, issue 13). What must not change: a
caller never gets an answer from a request that was already on the wire when it called (that answer
may predate a write it saw acknowledged), a failure reaches every caller of the failed request, and
a caller that gives up does not take the others with it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kos.storage.interface import Unavailable

pytestmark = pytest.mark.etcd


@pytest.fixture(params=["grpc", "gateway"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed")
    from kos.storage.etcd import EtcdStore

    etcd = request.getfixturevalue("etcd_server")
    s = await EtcdStore.open(etcd.endpoints, prefix=f"/test-{request.node.name}", transport=request.param)
    try:
        yield s
    finally:
        await s.close()


class _Spy:
    """Wraps the store's `_rpc`: counts the revision reads, and can hold each answer until released."""

    def __init__(self, store: Any) -> None:
        self.real = store._rpc
        self.reads = 0
        self.hold: asyncio.Event | None = None
        self.sent = asyncio.Event()
        self.fail: Exception | None = None
        store._rpc = self

    async def __call__(self, what: str, method: str, req: Any, **kw: Any) -> Any:
        if what != "revision":
            return await self.real(what, method, req, **kw)
        self.reads += 1
        if self.fail is not None:
            raise self.fail
        out = await self.real(what, method, req, **kw)  # answered now ...
        self.sent.set()
        if self.hold is not None:
            await self.hold.wait()  # ... but delivered later, as a slow response would be
        return out


async def test_concurrent_callers_share_one_range(store: Any) -> None:
    spy = _Spy(store)
    revs = await asyncio.gather(*(store.current_revision() for _ in range(50)))
    assert spy.reads == 1
    assert len(set(revs)) == 1


async def test_a_caller_never_gets_a_range_sent_before_it_called(store: Any) -> None:
    spy = _Spy(store)
    spy.hold = asyncio.Event()
    early = asyncio.create_task(store.current_revision())
    await spy.sent.wait()  # the first Range has been answered by etcd, its answer held back
    written = await store.create("/k", b"v")
    late = asyncio.create_task(store.current_revision())  # called after the write was acknowledged
    await asyncio.sleep(0)
    spy.hold.set()
    assert await early < written  # the held answer is stale: sharing it would have been wrong
    assert await late >= written
    assert spy.reads == 2


async def test_a_failure_reaches_every_caller_and_the_next_call_reads_again(store: Any) -> None:
    spy = _Spy(store)
    spy.fail = Unavailable("etcd is down")
    results = await asyncio.gather(*(store.current_revision() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    spy.fail = None
    written = await store.create("/k", b"v")
    assert await store.current_revision() >= written


async def test_a_cancelled_caller_does_not_cancel_the_others(store: Any) -> None:
    spy = _Spy(store)
    spy.hold = asyncio.Event()
    quitter = asyncio.create_task(store.current_revision())
    stayer = asyncio.create_task(store.current_revision())
    await spy.sent.wait()
    quitter.cancel()
    spy.hold.set()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert await stayer > 0
