"""Barriers for "nothing more happens": controllers, or the apiserver's garbage collector, that have seen every
change and have nothing left to do.

A test that checks a state *stays* as it is (a waiter keeps waiting, a lock keeps its address) must not
check after a fixed pause, which passes vacuously when the controllers are slow. It waits instead until
each controller's informers have received every change the server made to their kind, and its queue has
no key waiting or being worked on — all seen at one instant. From then on nothing moves unless something
new is written or a retry scheduled for later fires (a waiting attachment is looked at again with
growing backoff for as long as it waits: those re-looks are not waited for), so the state the test then
reads is the one the controllers settled on.
"""

from __future__ import annotations

from kos.api.resources import BY_TYPE
from kos.apiserver.server import APIServer
from kos.client.controller import Controller
from kos.testing.wait import eventually


def _latest(server: APIServer, plural: str) -> int:
    assert server.cacher is not None
    cache = server.cacher.caches[plural]
    return cache.history[-1].rev if cache.history else cache.floor


def caught_up_and_idle(server: APIServer, controllers: list[Controller]) -> bool:
    """Every informer of `controllers` at the server's latest change to its kind, and no queued or running key.

    Only for informers without selectors: a selective one never hears of the changes it does not select.
    """
    for c in controllers:
        q = c.queue
        if len(q) or q.processing():
            return False
        for inf in c.informers:
            rv = inf.reflector.resource_version
            if not rv or int(rv) < _latest(server, BY_TYPE[inf.reflector.cls].plural):
                return False
    return True


async def quiesced(server: APIServer, controllers: list[Controller], timeout: float = 10.0) -> None:
    """Wait until `caught_up_and_idle`; AssertionError after `timeout` seconds."""
    await eventually(lambda: caught_up_and_idle(server, controllers), timeout=timeout, interval=0.005)


async def collected(server: APIServer, timeout: float = 10.0) -> None:
    """Wait until the watch cache holds every write the store acknowledged and the garbage collector, which
    follows the cache, has nothing queued or in hand: what it would delete or edit, it has."""
    assert server.cacher is not None and server.gc is not None
    cacher, gc = server.cacher, server.gc

    async def done() -> bool:
        await cacher.sync()
        return gc.idle

    await eventually(done, timeout=timeout, interval=0.005)
