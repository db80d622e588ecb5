"""Periodic BOOKMARK events for idle watches, on the apiserver's clock.

Kubernetes' cacher sends a watcher that asked for bookmarks (`allowWatchBookmarks`) a BOOKMARK event
carrying the current resourceVersion when the watch has been quiet for a while, so a client that
reconnects resumes from a recent revision instead of one the history may have dropped
(staging/src/k8s.io/apiserver/pkg/storage/cacher: `bookmarkAfterResourceVersion`, dispatched about once
a second to watchers due within their timeout). Here: every half `interval`, each bookmark-allowing
watcher that has sent nothing for `interval` seconds, holds nothing unsent and is behind the cache's
revision gets one. The line is encoded once per resource per tick and shared.
"""

from __future__ import annotations

from collections.abc import Mapping

from kos.apiserver.cache import Cacher
from kos.apiserver.registry import Registry
from kos.util.clock import Clock


def send_due(cacher: Cacher, registries: Mapping[str, Registry], interval: float, now: float) -> int:
    """Push a BOOKMARK at the cache's revision to every watcher due one at monotonic time `now`; how many got one."""
    rev = cacher.revision
    sent = 0
    for plural, reg in registries.items():
        line: bytes | None = None
        for w in cacher.caches[plural].watchers.all():
            if w.allow_bookmarks and w.last_rev < rev and now - w.last_sent >= interval and not w.buffer:
                line = line or reg.bookmark(rev)
                w.push(line, rev)
                sent += 1
    return sent


async def run(cacher: Cacher, registries: Mapping[str, Registry], interval: float, clock: Clock) -> None:
    """Send due bookmarks every `interval / 2` seconds of `clock`, until cancelled."""
    while True:
        await clock.sleep(interval / 2)
        send_due(cacher, registries, interval, clock.monotonic())
