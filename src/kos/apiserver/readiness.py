"""Is this apiserver fit to serve: its store reachable and its watch cache keeping up (issue 13, Deliver 2).

With several apiservers behind a load balancer or in clients' server lists, a replica that has lost etcd, or
whose cache has fallen behind what etcd acknowledged, must say so on `/readyz` so traffic goes elsewhere —
kube-apiserver's `/readyz` includes an `etcd` check for the same reason. Every `interval` seconds the checker
asks the store for its current revision (one cheap request, at most `timeout` seconds); the replica is not
ready while that fails, or while the cache has not reached the revision the store reported `lag_grace`
seconds ago. All on the injected clock.
"""

from __future__ import annotations

import asyncio
import collections

from kos.apiserver.cache import Cacher
from kos.storage.interface import Store, StoreError
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger
from kos.util.tasks import cancel_and_wait

log = get_logger(__name__)


class StoreReadiness:
    """`problem()` → why the replica is not ready, or None. `start()` / `stop()` run the checks."""

    def __init__(
        self,
        store: Store,
        cacher: Cacher,
        *,
        clock: Clock = REAL_CLOCK,
        interval: float = 1.0,
        timeout: float = 2.0,
        lag_grace: float = 3.0,
    ) -> None:
        self.store = store
        self.cacher = cacher
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.lag_grace = lag_grace
        self._unreachable: str | None = None
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        """(monotonic time, store revision) of recent checks, oldest first."""
        self._task: asyncio.Task[None] | None = None
        self.draining = False
        """Set when the server is about to stop: not ready, whatever the store says."""

    def problem(self) -> str | None:
        if self.draining:
            return "shutting down"
        if self._unreachable is not None:
            return f"storage unreachable: {self._unreachable}"
        due = self.clock.monotonic() - self.lag_grace
        behind = max((rev for t, rev in self._samples if t <= due), default=0)
        if self.cacher.revision < behind:
            return (f"watch cache behind the store: at revision {self.cacher.revision}, the store was at {behind} "
                    f"more than {self.lag_grace:g}s ago")  # fmt: skip
        return None

    async def check(self) -> None:
        """One check: ask the store for its revision and remember the answer (or that there was none)."""
        try:
            rev = await asyncio.wait_for(self.store.current_revision(), self.timeout)
        except (StoreError, TimeoutError) as e:
            if self._unreachable is None:
                log.warning("storage unreachable: not ready", error=str(e) or type(e).__name__)
            self._unreachable = str(e) or type(e).__name__
            return
        if self._unreachable is not None:
            log.info("storage reachable again")
        self._unreachable = None
        now = self.clock.monotonic()
        self._samples.append((now, rev))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.lag_grace:
            self._samples.popleft()  # keep one sample at least lag_grace old

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kos-readiness")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await self.check()
            await self.clock.sleep(self.interval)
