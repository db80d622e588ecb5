"""Assembly of the API server: store → watch cache → registries → HTTP, plus GC and bookmarks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import Awaitable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from kos.api import resources
from kos.apiserver import bookmarks, watchmux
from kos.apiserver import limits as quotas
from kos.apiserver.address_protection import AddressBook, AttachmentStatusRule, LockDeletionRule, ProtectionController
from kos.apiserver.auth.gate import Gate
from kos.apiserver.auth.user import UserInfo
from kos.apiserver.cache import Cacher
from kos.apiserver.gc import GarbageCollector
from kos.apiserver.handlers import RequestMetrics, ResourceAPI
from kos.apiserver.inflight import InFlight
from kos.apiserver.metrics import APIServerMetrics
from kos.apiserver.readiness import StoreReadiness
from kos.apiserver.registry import Registry, SubnetAdmission, WriteRules
from kos.apiserver.routes import Routes
from kos.apiserver.storagemetrics import MeteredStore
from kos.apiserver.strategy import for_plural
from kos.apiserver.watchstream import WatchStreams
from kos.http.limits import HTTPLimits
from kos.http.messages import Request, Upgrade
from kos.http.server import HTTPServer
from kos.http.tls import ReloadingContext
from kos.storage.interface import Store
from kos.storage.url import open_store
from kos.util import gctune
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

log = get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    storage: str = "memory://"
    host: str = "127.0.0.1"
    port: int = 8080
    watch_cache_size: int = 50_000
    max_request_bytes: int = 1 << 20
    check_subnet_conflicts: bool = True
    bookmark_interval: float = 10.0
    watcher_max_bytes: int = 64 << 20
    # Bounds on what one client can make the server hold (see kos.apiserver.limits; docs/operations.md).
    max_header_line_bytes: int = 8190
    max_headers: int = 128
    header_timeout: float = 32.0
    idle_timeout: float = 90.0
    max_pipelined_requests: int = 64
    max_watches_per_connection: int = 50_000
    max_watches_per_client: int = 100_000
    max_watchmux_connections_per_client: int = 16
    watchmux_max_bytes: int = 128 << 20
    shutdown_timeout: float = 3.0
    """Seconds shutdown waits for requests in flight and for watch clients to take their end, per step."""
    shutdown_delay: float = 0.0
    """Seconds a stopping server keeps serving with /readyz false before it stops accepting, so load balancers
    and clients move away first (kube-apiserver's --shutdown-delay-duration)."""
    max_requests_inflight: int = 400
    """Read-only calls served at once before the next is answered 429 (0: no cap; `inflight`)."""
    max_mutating_requests_inflight: int = 200
    """Mutating calls served at once before the next is answered 429 (0: no cap)."""

    def http_limits(self) -> HTTPLimits:
        return HTTPLimits(
            max_line_bytes=self.max_header_line_bytes,
            max_headers=self.max_headers,
            header_timeout=self.header_timeout,
            idle_timeout=self.idle_timeout,
            max_pipelined=self.max_pipelined_requests,
            max_body=self.max_request_bytes,
        )


class APIServer:
    """The apiserver: `start()` opens the store, loads the watch cache and listens (plain HTTP, or TLS when
    `ssl` is given); `stop()` ends it within seconds.

    `ssl` is a fixed `ssl.SSLContext` or a `kos.http.tls.ReloadingContext`, whose files are polled while the
    server listens (`kos.http.server.HTTPServer`). `gate` authenticates and authorizes every request
    (`kos.apiserver.auth`; insecure when not given).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        clock: Clock = REAL_CLOCK,
        ssl: ssl.SSLContext | ReloadingContext | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.settings = settings
        self.gate = gate or Gate.insecure()
        """Authentication, authorization and admission (`kos.apiserver.auth`); insecure unless given."""
        self.clock = clock
        self.metrics = APIServerMetrics()
        self._store = store
        self._own_store = store is None
        self.cacher: Cacher | None = None
        self.gc: GarbageCollector | None = None
        self.protection: ProtectionController | None = None
        self.readiness: StoreReadiness | None = None
        """Whether the store answers and the cache keeps up with it (/readyz)."""
        self.registries: dict[str, Registry] = {}
        self.ssl = ssl
        self.port = settings.port
        self._bookmarks: asyncio.Task[None] | None = None
        self.http: HTTPServer | None = None
        self._ws: web.Server | None = None
        """aiohttp's low-level server: only for the watch multiplexer's WebSocket, after our layer's upgrade."""
        self.watch_quota = quotas.watch_quota(settings.max_watches_per_client)
        self.watchmux_quota = quotas.watchmux_quota(settings.max_watchmux_connections_per_client)
        self.watchmux: watchmux.WatchMuxServer | None = None

    @property
    def store(self) -> Store:
        assert self._store is not None
        return self._store

    @property
    def url(self) -> str:
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{'https' if self.ssl is not None else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        if self._store is None:
            self._store = await open_store(self.settings.storage)
        metered = self._store
        if not (isinstance(metered, MeteredStore) and metered.latency is self.metrics.storage_latency):
            # every caller's store calls timed in this server's metrics (a restart keeps its wrapper)
            self._store = MeteredStore(metered.inner if isinstance(metered, MeteredStore) else metered,
                                       self.metrics.storage_latency)  # fmt: skip
        s = self.settings
        self.cacher = Cacher(self.store, history=s.watch_cache_size, on_events=self._on_events,
                             on_reload=self._on_reload, clock=self.clock)  # fmt: skip
        await self.cacher.start()
        admission = SubnetAdmission(self.cacher) if s.check_subnet_conflicts else None
        book = AddressBook(self.cacher, self.store)
        lock_rule = LockDeletionRule(book)
        rules: dict[str, WriteRules] = {
            resources.NETWORK_ATTACHMENTS.plural: AttachmentStatusRule(book),
            resources.IPLOCKS.plural: lock_rule,
        }
        for r in resources.ALL:
            self.registries[r.plural] = Registry(
                r, for_plural(r.plural), self.store, self.cacher, self.clock,
                admission=admission if r is resources.SUBNETS else None,
                rules=rules.get(r.plural),
                watcher_max_bytes=s.watcher_max_bytes,
            )  # fmt: skip
            cache = self.cacher.caches[r.plural]
            self.metrics.track(r.plural, lambda c=cache: len(c.items))  # type: ignore[misc]
        self.metrics.revision.set_function(lambda: self.cacher.revision if self.cacher else 0)
        gctune.freeze_startup_state()
        self.gc = GarbageCollector(self.cacher, self.registries, clock=self.clock)
        self.gc.start()
        self.protection = ProtectionController(self.cacher, self.registries[resources.IPLOCKS.plural], lock_rule,
                                              clock=self.clock)  # fmt: skip
        self.protection.start()
        self._bookmarks = asyncio.create_task(
            bookmarks.run(self.cacher, self.registries, s.bookmark_interval, self.clock), name="kos-bookmarks"
        )
        self.readiness = StoreReadiness(self.store, self.cacher, clock=self.clock)
        self.readiness.start()
        self.http = HTTPServer(self.build_app(), s.host, s.port, limits=s.http_limits(), ssl=self.ssl)
        await self.http.start()
        self.port = self.http.port
        log.info("kos apiserver serving", url=self.url, storage=s.storage)

    def _on_reload(self) -> None:
        if self.gc is not None:
            self.gc.scan()
        if self.protection is not None:
            self.protection.scan()

    def _on_events(self, events: Any) -> None:
        if self.protection is not None:
            self.protection.on_events(events)
        if self.gc is not None:
            before = self.gc.deleted
            self.gc.on_events(events)
            if self.gc.deleted != before:
                self.metrics.gc_deleted.inc(self.gc.deleted - before)

    async def stop(self) -> None:
        """Stop within seconds, whoever is connected (aiohttp #2200: the runner's clean-up waits for every
        handler, and a WebSocket's handler runs until the socket closes).

        New connections are refused first; calls in flight are answered; every watch is ended — an HTTP
        watch with the end of its chunked stream, a multiplexed one with its end record and the
        connection with 1001 — so clients resume from their last revision elsewhere; what still runs
        after `shutdown_timeout` is cancelled. With a `shutdown_delay`, /readyz is 503 ("shutting down") for that
        long first while everything is still served.
        """
        t = self.settings.shutdown_timeout
        if self.readiness is not None and self.settings.shutdown_delay > 0 and not self.readiness.draining:
            self.readiness.draining = True
            await self.clock.sleep(self.settings.shutdown_delay)
        if self.http is not None:
            self.http.close()
        if self._bookmarks is not None:
            self._bookmarks.cancel()
        if self.cacher is not None:  # HTTP watches end their streams; multiplexed ones queue their end records
            for w in list(self.cacher.all_watchers()):
                w.close()
            self.cacher.release_waiters()  # a call waiting for a revision is answered (503) rather than cut off
        steps = [self.watchmux.shutdown(t)] if self.watchmux is not None else []
        if self._ws is not None:
            steps.append(_within(t, [self._ws.shutdown(t)]))
        if self.http is not None:
            steps.append(self.http.stop(t))
        await asyncio.gather(*steps, return_exceptions=True)
        if self.gc is not None:
            await self.gc.stop()
        if self.protection is not None:
            await self.protection.stop()
        if self.readiness is not None:
            await self.readiness.stop()
        if self.cacher is not None:
            await self.cacher.stop()
        if self._own_store and self._store is not None:
            await self._store.close()

    # --- HTTP ------------------------------------------------------------------------------

    def build_app(self) -> Routes:
        """The HTTP application (`routes.Routes`) over the registries; the watch multiplexer's WebSocket is
        upgraded to aiohttp's protocol (the one request kos hands to a library)."""
        s = self.settings
        assert self.cacher is not None
        observer = RequestMetrics(self.metrics)
        api = ResourceAPI(self.registries, self.metrics, self.clock, max_body=s.max_request_bytes, observer=observer,
                          gate=self.gate)  # fmt: skip
        watches = WatchStreams(self.registries, self.metrics, self.clock, self.watch_quota, observer, self.gate)
        mux = self.watchmux = watchmux.WatchMuxServer(
            self.registries, self.metrics, quota=self.watch_quota, connections=self.watchmux_quota, gate=self.gate,
            limits=watchmux.MuxLimits(max_watches=s.max_watches_per_connection, max_bytes=s.watchmux_max_bytes,
                                      max_selector=s.max_header_line_bytes, stall_timeout=s.idle_timeout),
        )  # fmt: skip
        limits = s.http_limits()
        ws = self._ws = web.Server(
            mux.serve, handler_cancellation=True, access_log=None, max_line_size=limits.max_line_bytes,
            max_field_size=limits.max_line_bytes, max_headers=limits.max_headers,
            keepalive_timeout=limits.idle_timeout,
            logger=_ClientErrorsQuiet(logging.getLogger("aiohttp.server")),
        )  # fmt: skip

        async def upgrade(request: Request, user: UserInfo) -> Upgrade:
            return Upgrade(mux.protocol(ws, user))

        inflight = InFlight(s.max_requests_inflight, s.max_mutating_requests_inflight, self.metrics)
        routes = Routes(api, watches, upgrade, self.cacher, self.metrics, self.gate, inflight)
        routes.readiness = self.readiness
        return routes


class _ClientErrorsQuiet(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp logs every malformed request with a traceback at ERROR, so any client could fill the log; a
    client's error (a 4xx parse error) goes to DEBUG, the server's own failures stay at ERROR."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError) and 400 <= exc_info.code < 500:
            self.logger.debug(str(msg) + ": %s", *args, exc_info)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


async def _within(seconds: float, waits: list[Awaitable[None]]) -> None:
    """Wait for all of `waits`, for at most `seconds`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*waits), seconds)
