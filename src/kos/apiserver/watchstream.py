"""The HTTP watch: a chunked stream of watch-event lines from a watcher's buffer of pre-encoded lines.

Checks come first (path, options, the per-client quota, the start revision): a
refused watch is an ordinary error reply. A resourceVersion too old to start
from is, as in Kubernetes, a 200 stream holding one ERROR event (410 Gone). Once
streaming, the watcher offers each turn's lines straight to the socket (one
chunk, one write, shared bytes among all watchers of an event) while the socket
keeps up; when it does not, lines wait in the watcher (bounded: a watcher that
falls too far behind is closed, and the client resumes from its last revision)
and this task writes them as the client drains.
"""

from __future__ import annotations

import time
from typing import Any

from kos.api import codec, errors, watchframe
from kos.api.errors import StatusError
from kos.apiserver import listoptions, negotiation, params, resourcepath, table, urlparts
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.gate import Gate
from kos.apiserver.auth.user import UNSECURED, UserInfo
from kos.apiserver.cache import Entry
from kos.apiserver.encoding import error_reply
from kos.apiserver.handlers import RequestMetrics
from kos.apiserver.limits import ClientQuota
from kos.apiserver.metrics import APIServerMetrics
from kos.apiserver.registry import Registry
from kos.apiserver.watchers import Watcher
from kos.http.messages import ChunkSink, Reply, Request, Streaming
from kos.util.clock import Clock
from kos.util.log import get_logger

log = get_logger(__name__)

_HEADERS = {"Cache-Control": "no-cache, private"}


class WatchStreams:
    """Serves watches on `PREFIX/...`: `serve(request, tail)` → a `Streaming` response, or an error `Reply`."""

    def __init__(
        self,
        registries: dict[str, Registry],
        metrics: APIServerMetrics,
        clock: Clock,
        quota: ClientQuota,
        observer: RequestMetrics,
        gate: Gate | None = None,
    ) -> None:
        self.registries = registries
        self.gate = gate or Gate.insecure()
        """Each watch is authorized as the verb "watch" (`kos.apiserver.auth`); nothing is judged when insecure."""
        self.metrics = metrics
        self.clock = clock
        self.quota = quota
        self.observer = observer

    async def serve(self, req: Request, tail: str, user: UserInfo = UNSECURED) -> Reply | Streaming:
        t0 = time.perf_counter()
        resource = ""
        try:
            route = resourcepath.parse_path(tail, req.path[: -len(tail) - 1])
            resource = route.resource.plural
            q = urlparts.parse_query(req.query)
            verb = resourcepath.verb(req.method, q, route)
            if self.gate.authorizer is not None:
                r = route.resource
                await self.gate.authorize(Attributes(user, verb, api_group=r.group, api_version=r.version, resource=resource,
                                                     namespace=route.namespace or "", name=route.name))  # fmt: skip
            reg = self.registries[resource]
            opts, timeout = listoptions.watch_request(q, route.resource, "" if route.collection else route.name)
            render = self._table_renderer(reg, q, req.header(b"accept"))
            self.quota.acquire(req.remote)
            try:
                w = await reg.watch(route.namespace, opts, render=render)
            except BaseException:
                self.quota.release(req.remote)
                raise
        except errors.Gone as gone:  # Kubernetes reports a too-old watch as an ERROR event in a 200 stream
            self.observer.observe("watch", resource, "", 200, time.perf_counter() - t0)
            line = watchframe.error_frame(codec.encode(gone.to_status()))

            async def gone_body(sink: ChunkSink) -> None:
                sink.write(line)

            return Streaming(gone_body, headers=_HEADERS)
        except StatusError as e:
            self.observer.observe("watch", resource, "", e.code, time.perf_counter() - t0)
            return error_reply(e)
        self.observer.observe("watch", resource, "", 200, time.perf_counter() - t0)
        return _Stream(self, reg, w, timeout, req.remote).response()

    def _table_renderer(self, reg: Registry, q: Any, accept: str | None) -> Any:
        """For kubectl (`Accept: ...;as=Table`): each event's object as a Table of one row; else None."""
        out = negotiation.parse_accept(accept)
        if not out.table:
            return None
        res, include, version, clock = reg.resource, params.include_object(q, True), out.table_version, self.clock

        def render(typ: str, entry: Entry) -> bytes:
            body = table.render_table(res, [entry], resource_version=entry.rev, now=clock.now(),
                                      version=version, include_object=include)  # fmt: skip
            return watchframe.frame(typ, body)

        return render


class _Stream:
    """One open watch on its way out: its metrics, its timeout, its quota, and its end however it comes."""

    __slots__ = ("client", "owner", "reg", "timeout", "w")

    def __init__(self, owner: WatchStreams, reg: Registry, w: Watcher, timeout: int, client: str) -> None:
        self.owner, self.reg, self.w, self.timeout = owner, reg, w, timeout
        self.client: str | None = client
        """Whose quota the watch counts against; None once finished."""

    def response(self) -> Streaming:
        return Streaming(self.body, headers=_HEADERS, abandon=self.finish)

    async def body(self, sink: ChunkSink) -> None:
        w, plural = self.w, self.reg.resource.plural
        metrics = self.owner.metrics
        gauge = metrics.watchers.labels(plural)
        gauge.inc()
        timer = w.expire_after(self.timeout)
        try:
            while True:
                if w.buffer:  # backlog (or events pushed before the response started): write with flow control
                    sink.write(w.take())
                    await sink.drain()
                    continue
                if w.closed or sink.closing:
                    break
                w.sink = sink.offer
                w.wakeup.clear()
                await w.wakeup.wait()
                w.sink = None
        finally:
            w.sink = None
            timer.cancel()
            gauge.dec()
            self.finish()

    def finish(self) -> None:
        """Stop the watcher and count what it sent; once, whether or not the body ran."""
        client, self.client = self.client, None
        if client is None:
            return
        w, plural = self.w, self.reg.resource.plural
        self.reg.stop_watch(w)
        self.owner.quota.release(client)
        m = self.owner.metrics
        m.watch_events.labels(plural).inc(w.sent_events)
        m.watch_bytes.labels(plural).inc(w.sent_bytes)
        if w.close_reason:  # dropped for falling behind, however the stream then ended
            m.slow_watchers.labels(plural).inc()
            log.info("closed a watch", resource=plural, reason=w.close_reason)
