"""Assembly of the API server: store → watch cache → registries → HTTP, plus GC and bookmarks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import weakref
from collections.abc import Awaitable
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kos.api import resources
from kos.api.errors import MethodNotAllowed, NotAcceptable, NotFound, RequestEntityTooLarge
from kos.api.types import GROUP, VERSION
from kos.apiserver import bookmarks, discovery, watchmux
from kos.apiserver import limits as quotas
from kos.apiserver.address_protection import AddressBook, AttachmentStatusRule, LockDeletionRule, ProtectionController
from kos.apiserver.cache import Cacher
from kos.apiserver.fastpath import FastHTTP
from kos.apiserver.gc import GarbageCollector
from kos.apiserver.handlers import PREFIX, ResourceAPI, json_response, status_response
from kos.apiserver.limits import HTTPLimits
from kos.apiserver.metrics import APIServerMetrics
from kos.apiserver.namespaces import Namespaces, core_v1_resources
from kos.apiserver.registry import Registry, SubnetAdmission, WriteRules
from kos.apiserver.strategy import for_plural
from kos.storage.interface import Store
from kos.storage.url import open_store
from kos.util import gctune
from kos.util.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)


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

    def http_limits(self) -> HTTPLimits:
        return HTTPLimits(
            max_line_bytes=self.max_header_line_bytes,
            max_headers=self.max_headers,
            header_timeout=self.header_timeout,
            idle_timeout=self.idle_timeout,
            max_pipelined=self.max_pipelined_requests,
        )


class APIServer:
    def __init__(self, settings: Settings, *, store: Store | None = None, clock: Clock = REAL_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = APIServerMetrics()
        self._store = store
        self._own_store = store is None
        self.cacher: Cacher | None = None
        self.gc: GarbageCollector | None = None
        self.protection: ProtectionController | None = None
        self.registries: dict[str, Registry] = {}
        self.runner: web.AppRunner | None = None
        self.port = settings.port
        self._bookmarks: asyncio.Task[None] | None = None
        self.api: ResourceAPI | None = None
        self._listener: asyncio.Server | None = None
        self._fast_conns: weakref.WeakSet[FastHTTP] = weakref.WeakSet()
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
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._store is None:
            self._store = await open_store(self.settings.storage)
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
        app = self.build_app()
        limits = s.http_limits()
        # aiohttp parses what the lean front end hands over: the same bounds; its keep-alive timer (armed
        # while it waits for a request, complete or not) is the idle timeout.
        self.runner = web.AppRunner(
            app, handle_signals=False, access_log=None, handler_cancellation=True,
            max_line_size=limits.max_line_bytes, max_field_size=limits.max_line_bytes,
            max_headers=limits.max_headers, keepalive_timeout=limits.idle_timeout,
            shutdown_timeout=s.shutdown_timeout, logger=_ClientErrorsQuiet(logging.getLogger("aiohttp.server")),
        )  # fmt: skip
        await self.runner.setup()
        fallback = self.runner.server
        assert fallback is not None and self.api is not None
        api, max_body, conns = self.api, s.max_request_bytes, self._fast_conns

        def protocol() -> FastHTTP:
            p = FastHTTP(api, fallback, max_body, limits)
            conns.add(p)
            return p

        # calls are served by the lean front end; everything else is handed to aiohttp (see fastpath)
        self._listener = await asyncio.get_running_loop().create_server(
            protocol, s.host, s.port, backlog=1024, reuse_address=True
        )
        sockets = self._listener.sockets
        if sockets:  # learn the port when asked for port 0
            self.port = sockets[0].getsockname()[1]
        log.info("kos apiserver serving on %s with storage %s", self.url, s.storage)

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
        after `shutdown_timeout` is cancelled.
        """
        t = self.settings.shutdown_timeout
        if self._listener is not None:
            self._listener.close()
            for p in list(self._fast_conns):
                p.close()
        if self._bookmarks is not None:
            self._bookmarks.cancel()
        if self.cacher is not None:  # HTTP watches end their streams; multiplexed ones queue their end records
            for w in list(self.cacher.all_watchers()):
                w.close()
            self.cacher.release_waiters()  # a call waiting for a revision is answered (503) rather than cut off
        steps = [self.watchmux.shutdown(t)] if self.watchmux is not None else []
        if self.runner is not None:
            steps.append(self.runner.cleanup())
        if self._fast_conns:
            steps.append(_within(t, [p.answered() for p in self._fast_conns]))
        await asyncio.gather(*steps, return_exceptions=True)
        for p in list(self._fast_conns):
            p.abort()
        self._fast_conns.clear()
        if self.gc is not None:
            await self.gc.stop()
        if self.protection is not None:
            await self.protection.stop()
        if self.cacher is not None:
            await self.cacher.stop()
        if self._own_store and self._store is not None:
            await self._store.close()

    # --- HTTP ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        s = self.settings
        api = self.api = ResourceAPI(
            self.registries, self.metrics, self.clock,
            max_body=s.max_request_bytes, watch_quota=self.watch_quota,
        )  # fmt: skip
        self.watchmux = watchmux.WatchMuxServer(
            self.registries, self.metrics, quota=self.watch_quota, connections=self.watchmux_quota,
            limits=watchmux.MuxLimits(max_watches=s.max_watches_per_connection, max_bytes=s.watchmux_max_bytes,
                                      max_selector=s.max_header_line_bytes, stall_timeout=s.idle_timeout),
        )  # fmt: skip
        app = web.Application(client_max_size=self.settings.max_request_bytes, middlewares=[_statuses])
        enc = msgspec.json.encode

        def doc(body: Any) -> Any:
            data = enc(body)

            async def handler(request: web.Request) -> web.StreamResponse:
                if request.method not in ("GET", "HEAD"):
                    return _method_not_allowed(request)
                return json_response(data)

            return handler

        async def api_versions(request: web.Request) -> web.StreamResponse:
            return json_response(enc(discovery.api_versions(request.host)))

        r = app.router
        ns = Namespaces(self.cacher) if self.cacher else None
        assert ns is not None
        r.add_route("*", "/api", api_versions)
        r.add_route("*", "/api/", api_versions)
        r.add_route("*", "/api/v1", doc(core_v1_resources()))
        r.add_route("*", "/api/v1/namespaces", ns.list)
        r.add_route("*", "/api/v1/namespaces/{name}", ns.get)
        r.add_route("*", "/apis", doc(discovery.api_group_list()))
        r.add_route("*", "/apis/", doc(discovery.api_group_list()))
        r.add_route("*", f"/apis/{GROUP}", doc(discovery.api_group()))
        r.add_route("*", f"/apis/{GROUP}/", doc(discovery.api_group()))
        r.add_route("*", PREFIX, doc(discovery.api_resource_list()))
        r.add_route("*", PREFIX + "/", doc(discovery.api_resource_list()))
        r.add_route("GET", PREFIX + "/watchmux", self._watchmux)
        r.add_route("*", PREFIX + r"/{tail:[\s\S]+}", api.handle)  # any byte, even a decoded newline
        r.add_route("*", "/version", doc(discovery.version_info()))
        r.add_route("*", "/version/", doc(discovery.version_info()))
        r.add_route("*", "/openapi/v2", self._openapi_v2(enc(discovery.openapi_v2())))
        v3 = enc(discovery.openapi_v3())
        r.add_route("*", "/openapi/v3", doc(discovery.openapi_v3_root(v3)))
        r.add_route("*", f"/openapi/v3/apis/{GROUP}/{VERSION}", self._openapi_v3(v3))
        r.add_route("GET", "/healthz", self._health)
        r.add_route("GET", "/livez", self._health)
        r.add_route("GET", "/readyz", self._ready)
        r.add_route("GET", "/metrics", self._metrics)
        return app

    async def _watchmux(self, request: web.Request) -> web.StreamResponse:
        assert self.watchmux is not None
        return await self.watchmux.serve(request)

    @staticmethod
    def _openapi_v2(data: bytes) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            accept = request.headers.get("Accept", "")
            if accept and "json" not in accept and "*/*" not in accept:
                return status_response(NotAcceptable("only application/json is served for /openapi/v2"))
            return json_response(data)

        return handler

    @staticmethod
    def _openapi_v3(data: bytes) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            accept = request.headers.get("Accept", "")
            if accept and "json" not in accept and "*/*" not in accept:
                return status_response(NotAcceptable("only application/json is served for /openapi/v3"))
            return json_response(data, headers={"Cache-Control": "public, immutable"})

        return handler

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _ready(self, request: web.Request) -> web.StreamResponse:
        c = self.cacher
        if c is None or not c.ready.is_set():
            return web.Response(status=503, text="watch cache not loaded")
        if c.failed is not None:
            return web.Response(status=503, text=f"watch cache failed: {c.failed}")
        return web.Response(text="ok")

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


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


@web.middleware
async def _statuses(request: web.Request, handler: Any) -> web.StreamResponse:
    """Requests the router cannot place get a Kubernetes Status too, not aiohttp's plain text."""
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except web.HTTPNotFound:
        return status_response(NotFound(f"the server could not find the requested resource ({request.path})"))
    except web.HTTPMethodNotAllowed:
        return _method_not_allowed(request)
    except web.HTTPRequestEntityTooLarge:
        return status_response(RequestEntityTooLarge("Request entity too large"))


def _method_not_allowed(request: web.Request) -> web.StreamResponse:
    return status_response(MethodNotAllowed(f"{request.method} is not allowed on {request.path}"))
