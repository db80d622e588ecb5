"""Many watches over one connection: a WebSocket that multiplexes watch streams (a kos extension).

Kubernetes clients multiplex watches over HTTP/2; over HTTP/1.1 every watch
needs its own TCP connection. At 1,000 nodes with a watch per relevant VNI that
is tens of thousands of sockets — past a process's file-descriptor limit — and a
socket write per event per watch. This endpoint carries any number of watches
on one WebSocket, `/apis/network.example.com/v1alpha1/watchmux`:

    client → server (JSON text):  {"op": "watch", "id": 7, "resource": "networkattachments",
                                   "namespace": "ns" (optional), "labelSelector": "...",
                                   "fieldSelector": "...", "resourceVersion": "...",
                                   "resourceVersionMatch": "...", "sendInitialEvents": true,
                                   "allowWatchBookmarks": true, "timeoutSeconds": 600}
                                  {"op": "cancel", "id": 7}
    server → client (binary):     records `<id> <n>\\n<n bytes>`, the bytes being watch event
                                  lines exactly as the HTTP watch sends them; `<id> 0\\n` ends
                                  watch <id> (timeout, cancel, or a watcher that fell behind).

Each watch keeps its own selector, resourceVersion and semantics, and is served by
the same indexed watchers as HTTP watches; its options are checked as an HTTP
watch's are (`listoptions`), a bad one getting an ERROR record for its id. A
watch without `namespace` (or with null) covers every namespace; an empty or
invalid namespace is refused, never read as "every". Everything for one connection that is
pushed in one turn of the event loop leaves in one WebSocket message. Plain HTTP
watches remain the standard interface (kubectl, the Kubernetes clients).

Frames are decoded strictly (known fields, their types, bounded sizes; flags and
`timeoutSeconds` may also be strings, as query parameters are). A frame that is
refused gets an `ERROR` event carrying a `Status` on its watch id, then that id's
end record; one that names no usable id gets it on id `-1`. Either way only that
request fails: the connection and its other watches go on. Each watch starts in a
task of its own, so one that waits (a future resourceVersion, a consistent read)
holds up neither other watches nor cancels.

Authorization: the connection is its upgrade request's user's (`WatchMuxServer.protocol` binds it), and
every watch frame is authorized as that user's "watch" of its resource and namespace; a denied one gets the
403 `Status` as an ERROR event on its id, then its end record, and the connection goes on.

Bounds: at most `max_watchmux_connections_per_client` connections per client
(`limits.watchmux_quota`, 429 before the upgrade); per connection (`MuxLimits`,
settings of the server): at most
`max_watches` watches (and the server's per-client quota, `limits.watch_quota`),
at most `MAX_SELECTOR_BYTES` of selectors among them, and `max_bytes` of output
queued for a client that reads slower than its watches produce: past half of it
no new frame is read until the client catches up; past all of it, a watch whose
events cannot be queued is ended as a slow HTTP watcher is (the client resumes it
from its last revision). A client that stops reading altogether misses the
WebSocket heartbeat's pong and loses the connection; one still being written to
then is aborted, so what was queued for it is freed. On shutdown every watch is
ended (so clients resume elsewhere) and the connection closed with 1001.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from kos.api import codec, watchframe
from kos.api.errors import BadRequest, InternalError, StatusError, too_many_requests
from kos.api.resources import BY_PLURAL
from kos.apiserver import listoptions, urlparts
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.gate import Gate
from kos.apiserver.auth.user import ANONYMOUS, UNSECURED, UserInfo
from kos.apiserver.limits import ClientQuota
from kos.apiserver.metrics import APIServerMetrics
from kos.apiserver.registry import Registry, WatchOptions
from kos.apiserver.watchers import Watcher
from kos.util.clock import Timer
from kos.util.log import get_logger
from kos.util.tasks import cancel_and_wait

log = get_logger(__name__)

MAX_FRAME = 1 << 20
"""Largest frame read at all (aiohttp closes the connection with 1009 past it); fields are bounded tighter."""
MAX_ID = (1 << 53) - 1
"""Ids are JSON numbers every client can represent exactly."""
MAX_STARTING = 64
"""Watches being opened at once on one connection (each may wait for a revision); further frames wait."""
MAX_SELECTOR_BYTES = 8 << 20
"""Selector text among one connection's watches: a parsed selector takes ~20 times its text."""
HEARTBEAT = 30.0
"""Seconds between pings; a client that has not answered one within half of it loses the connection."""
NO_ID = -1
MAX_UPGRADING = 4096
"""Upgraded connections whose user is remembered until their request is served (the oldest forgotten first:
such a connection is then anonymous, and its watches are refused)."""
"""The id of records about frames that name no usable watch id."""


@dataclasses.dataclass(frozen=True, slots=True)
class MuxLimits:
    max_watches: int = 50_000
    """Watches open (or opening) on one connection: simnodes' 1,000 agents hold ~21,000."""
    max_bytes: int = 128 << 20
    """Output queued for one connection (sent, pending, and held by its watchers) before it is cut back."""
    max_selector: int = 8190
    """Longest label or field selector of one watch: the HTTP front ends' request-line bound."""
    stall_timeout: float = 90.0
    """Seconds one message may take to write before the client is taken for gone (the HTTP idle timeout)."""


_Flag = bool | Annotated[str, msgspec.Meta(max_length=5)]


class _Frame(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    op: Literal["watch", "cancel"]
    id: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]
    resource: Annotated[str, msgspec.Meta(max_length=253)] = ""
    namespace: Annotated[str, msgspec.Meta(max_length=253)] | None = None
    label_selector: str = ""
    field_selector: str = ""
    resource_version: Annotated[str, msgspec.Meta(max_length=64)] = ""
    resource_version_match: Annotated[str, msgspec.Meta(max_length=64)] = ""
    allow_watch_bookmarks: _Flag = False
    send_initial_events: _Flag | None = None
    timeout_seconds: (
        Annotated[int, msgspec.Meta(ge=0, le=(1 << 31) - 1)] | Annotated[str, msgspec.Meta(max_length=10)] | None
    ) = None


class _Id(msgspec.Struct):
    id: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


_FRAME = msgspec.json.Decoder(_Frame)
_ID = msgspec.json.Decoder(_Id)
_UNDECODABLE = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError)


def decode_frame(data: str | bytes) -> tuple[_Frame | None, int, StatusError | None]:
    """(frame, its id, None), or (None, the id to answer on, the error) for a frame that is refused."""
    try:
        f = _FRAME.decode(data)
        return f, f.id, None
    except _UNDECODABLE as e:
        err = BadRequest(f"invalid watchmux frame: {_reason(e)}")
    try:
        return None, _ID.decode(data).id, err
    except _UNDECODABLE:
        return None, NO_ID, err


def _reason(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "it is nested too deeply"
    return str(e)


def _flag(v: bool | str | None) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return "true" if v else "false"


def _query(f: _Frame) -> dict[str, str]:
    """The frame's parameters read like query parameters, through the same checks as HTTP watches."""
    q = {"labelSelector": f.label_selector, "fieldSelector": f.field_selector,
         "resourceVersion": f.resource_version, "resourceVersionMatch": f.resource_version_match,
         "allowWatchBookmarks": _flag(f.allow_watch_bookmarks)}  # fmt: skip
    sie = _flag(f.send_initial_events)
    if sie is not None:
        q["sendInitialEvents"] = sie
    if f.timeout_seconds is not None:
        q["timeoutSeconds"] = str(f.timeout_seconds)
    return {k: v for k, v in q.items() if v is not None}


def _error_line(err: StatusError) -> bytes:
    return watchframe.error_frame(codec.encode(err.to_status()))


class _Outbox:
    """The outbound side of a multiplexed connection: records queued and written as one WebSocket message per
    turn, bounded (`MuxLimits.max_bytes`), with watchers held back while the client is slow and a watchdog
    for a client that stopped reading. `MuxConnection` adds the watches that feed it."""

    watches: dict[int, tuple[Registry, Watcher, Timer, int]]
    """id → (registry, watcher, its timeout, its selectors' length)."""
    starting: dict[int, asyncio.Task[None]]

    def __init__(self, ws: web.WebSocketResponse, limits: MuxLimits, transport: asyncio.Transport | None) -> None:
        self.ws = ws
        self.transport = transport
        self.limits = limits
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.pending_limit = min(32 << 20, limits.max_bytes // 4)
        self.sending = 0
        """Bytes of the message being written (0 when none is)."""
        self.send_started = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.held: dict[int, int] = {}
        """Bytes the watchers refused by a full connection still buffer, by id."""
        self.held_bytes = 0
        self.blocked: set[int] = set()
        self.wakeup = asyncio.Event()
        self.room = asyncio.Event()
        self.flushing = asyncio.Event()
        """Set after each message is written (for shutdown to wait for the end records)."""
        self.closed = False

    # --- the outbound side -------------------------------------------------------------------

    def queued(self) -> int:
        return self.pending_bytes + self.sending + self.held_bytes

    def _record(self, wid: int, data: bytes) -> None:
        """A record outside any watcher (an error, an end): queued whatever the limits, counted against them."""
        self.pending.append(b"%d %d\n" % (wid, len(data)))
        if data:
            self.pending.append(data)
        self.pending_bytes += len(data) + 16
        self.wakeup.set()

    def _sink(self, wid: int) -> Callable[[list[bytes], int], bool]:
        pending = self.pending

        def sink(lines: list[bytes], size: int) -> bool:
            if self.closed:
                return False
            if self.pending_bytes > self.pending_limit:
                self._hold(wid, size)
                return False
            if self.held:
                self._release(wid)
            pending.append(b"%d %d\n" % (wid, size))
            pending.extend(lines)
            self.pending_bytes += size
            self.wakeup.set()
            return True

        return sink

    def _hold(self, wid: int, size: int) -> None:
        """A watcher keeps `size` bytes the connection had no room for; past the bound, it is dropped."""
        self.blocked.add(wid)
        self.held_bytes += size - self.held.get(wid, 0)
        self.held[wid] = size
        if self.queued() > self.limits.max_bytes:
            entry = self.watches.get(wid)
            if entry is not None:  # a slow watcher: the client resumes it from its last revision
                entry[1].close(f"the connection fell behind: more than {self.limits.max_bytes} bytes unsent")

    def _release(self, wid: int) -> None:
        size = self.held.pop(wid, None)
        if size is not None:
            self.held_bytes -= size
            self._notify_room()

    def _notify_room(self) -> None:
        if self.queued() <= self.limits.max_bytes // 2 and len(self.starting) < MAX_STARTING:
            self.room.set()

    async def wait_for_room(self) -> None:
        """Before reading another frame: the client must have read enough, and few watches be opening."""
        while not self.closed and (self.queued() > self.limits.max_bytes // 2 or len(self.starting) >= MAX_STARTING):
            self.room.clear()
            await self.room.wait()

    async def _flushed(self) -> None:
        while (self.pending or self.sending) and not self.closed:
            self.flushing.clear()
            await self.flushing.wait()

    async def writer(self) -> None:
        try:
            while not self.closed:
                await self.wakeup.wait()
                self.wakeup.clear()
                if not self.pending:
                    continue
                data = b"".join(self.pending)
                self.pending.clear()
                self.pending_bytes = 0
                self.sending = len(data)
                self.send_started = asyncio.get_running_loop().time()
                try:
                    await self.ws.send_bytes(data)
                finally:
                    self.sending = 0
                self.flushing.set()
                if self.blocked:
                    retry, self.blocked = self.blocked, set()
                    for wid in retry:
                        entry = self.watches.get(wid)
                        if entry is not None:
                            entry[1].flush()
                self._notify_room()
        except (ConnectionError, RuntimeError) as e:  # the connection is gone: stop queueing for it
            log.debug("watchmux: writing failed", error=repr(e))
            self.closed = True
            self.room.set()
            self.flushing.set()

    def watch_the_client(self) -> None:
        """Abort the connection when a write has stalled past `stall_timeout`, or the socket was closed under a
        stalled write (a missed heartbeat): closing a transport with unsent data would hold it forever."""
        self._watchdog = None
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        if self.sending and (self.ws.closed or loop.time() - self.send_started > self.limits.stall_timeout):
            log.info("watchmux: dropping a client that does not read", unsent_bytes=self.queued())
            if self.transport is not None:
                self.transport.abort()
            self.close()
            return
        self._watchdog = loop.call_later(min(HEARTBEAT, self.limits.stall_timeout) / 2, self.watch_the_client)

    def close(self) -> None:
        """End every watch and stop writing (the connection's; see `MuxConnection.close`)."""
        raise NotImplementedError


class MuxConnection(_Outbox):
    """One multiplexed connection's watches: opened from frames, each in a task, ended however they end."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        registries: dict[str, Registry],
        metrics: APIServerMetrics,
        *,
        limits: MuxLimits,
        quota: ClientQuota,
        client: str,
        transport: asyncio.Transport | None = None,
        user: UserInfo = UNSECURED,
        gate: Gate | None = None,
    ) -> None:
        super().__init__(ws, limits, transport)
        self.user = user
        self.gate = gate or Gate.insecure()
        self.registries = registries
        self.metrics = metrics
        self.quota = quota
        self.client = client
        self.watches = {}
        self.starting = {}
        self.selector_bytes = 0

    # --- watches -----------------------------------------------------------------------------

    def handle(self, data: str | bytes) -> None:
        """One frame from the client: open a watch (in a task of its own) or cancel one."""
        f, wid, err = decode_frame(data)
        try:
            if err is not None:
                raise err
            assert f is not None
            if f.op == "cancel":
                self.cancel(wid)
                return
            self._open(f)
        except StatusError as e:
            self.refuse(wid, e)

    def refuse(self, wid: int, err: StatusError) -> None:
        """An ERROR event on the id the request named (then that id's end), or on NO_ID if it is taken or absent."""
        if wid in self.watches or wid in self.starting:
            log.info("watchmux: refused a request for an open watch", watch_id=wid, error=err)
            wid = NO_ID
        self._record(wid, _error_line(err))
        if wid != NO_ID:
            self._record(wid, b"")

    def _open(self, f: _Frame) -> None:
        wid = f.id
        if wid in self.watches or wid in self.starting:
            raise BadRequest(f"watch {wid} is already open on this connection")
        res = BY_PLURAL.get(f.resource)
        if res is None:
            raise BadRequest(f"unknown resource {f.resource!r}: use one of {', '.join(sorted(BY_PLURAL))}")
        lim = self.limits
        size = len(f.label_selector) + len(f.field_selector)
        for name, sel in (("labelSelector", f.label_selector), ("fieldSelector", f.field_selector)):
            if len(sel) > lim.max_selector:
                raise BadRequest(f"{name} is too long: the limit is {lim.max_selector} bytes")
        if len(self.watches) + len(self.starting) >= lim.max_watches:
            raise too_many_requests(
                f"too many watches on this connection: the limit is {lim.max_watches}; open another connection "
                "or end some watches"
            )
        if self.selector_bytes + size > MAX_SELECTOR_BYTES:
            raise too_many_requests(
                f"the watches on this connection select with more than {MAX_SELECTOR_BYTES} bytes of selectors"
            )
        opts, timeout = listoptions.watch_request(_query(f), res)
        namespace = f.namespace
        if namespace is not None:  # absent (or null) is every namespace; "" is none, not every one
            if not namespace:
                raise BadRequest("namespace must be a non-empty string; leave it out to watch every namespace")
            urlparts.segment_name(namespace, "Namespace")
        self.quota.acquire(self.client)
        self.selector_bytes += size
        reg = self.registries[res.plural]
        self.starting[wid] = asyncio.get_running_loop().create_task(
            self._start(wid, reg, namespace, opts, timeout, size), name=f"watchmux-start-{wid}"
        )

    async def _start(
        self, wid: int, reg: Registry, namespace: str | None, opts: WatchOptions, timeout: int, size: int
    ) -> None:
        try:
            if self.gate.authorizer is not None:
                await self.gate.authorize(Attributes(self.user, "watch", api_group=reg.resource.group,
                                                     api_version=reg.resource.version,
                                                     resource=reg.resource.plural, namespace=namespace or ""))  # fmt: skip
            w = await reg.watch(namespace, opts)
        except BaseException as e:
            self.starting.pop(wid, None)
            self.quota.release(self.client)
            self.selector_bytes -= size
            self._notify_room()
            if isinstance(e, StatusError):  # Forbidden, Gone (too old a resourceVersion), Timeout, a bad option …
                if not self.closed:
                    self.refuse(wid, e)
                return
            if isinstance(e, Exception):  # a bug: say so on that watch alone
                log.exception("watchmux: opening a watch failed", watch_id=wid)
                if not self.closed:
                    self.refuse(wid, InternalError(f"opening the watch failed: {type(e).__name__}"))
                return
            if not self.closed:  # the client cancelled it while it opened: it ends as any watch does
                self._record(wid, b"")
            raise  # cancelled
        self.starting.pop(wid, None)
        if self.closed:
            reg.stop_watch(w)
            self.quota.release(self.client)
            self.selector_bytes -= size
            return
        timer = w.expire_after(timeout, lambda: self.end(wid))
        self.watches[wid] = (reg, w, timer, size)
        self.metrics.watchers.labels(reg.resource.plural).inc()
        w.on_close = lambda: self.end(wid)
        w.sink = self._sink(wid)
        w.flush()
        self._notify_room()

    def cancel(self, wid: int) -> None:
        task = self.starting.get(wid)
        if task is not None:
            task.cancel()  # its clean-up runs in the task
            return
        self.end(wid)

    def end(self, wid: int) -> None:
        entry = self.watches.pop(wid, None)
        if entry is None:
            return
        reg, w, timer, size = entry
        timer.cancel()
        w.on_close = None
        if w.buffer and not self.closed:
            w.flush()  # what the watcher still holds goes out before the end record
        reg.stop_watch(w)
        self._release(wid)
        self.blocked.discard(wid)
        self.quota.release(self.client)
        self.selector_bytes -= size
        plural = reg.resource.plural
        self.metrics.watchers.labels(plural).dec()
        self.metrics.watch_events.labels(plural).inc(w.sent_events)
        self.metrics.watch_bytes.labels(plural).inc(w.sent_bytes)
        if w.close_reason:
            self.metrics.slow_watchers.labels(plural).inc()
        if not self.closed:
            self._record(wid, b"")

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for task in list(self.starting.values()):
            task.cancel()
        for wid in list(self.watches):
            self.end(wid)
        self.closed = True
        self.wakeup.set()
        self.room.set()
        self.flushing.set()

    async def shutdown(self, timeout: float) -> None:
        """End every watch (so clients resume elsewhere), let the end records go, close with 1001."""
        for task in list(self.starting.values()):
            task.cancel()
        for wid in list(self.watches):
            self.end(wid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(self._flushed(), timeout)
        except TimeoutError:
            pass
        if not self.closed and not self.ws.closed:
            if self.sending or self.pending:  # a client that does not read gets no farewell
                if self.transport is not None:
                    self.transport.abort()
            else:
                try:
                    await asyncio.wait_for(self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down"),
                                           max(0.1, deadline - loop.time()))  # fmt: skip
                except (TimeoutError, ConnectionError, RuntimeError):
                    pass
        self.close()


class WatchMuxServer:
    """The endpoint: serves each connection and knows them all, for shutdown."""

    def __init__(
        self,
        registries: dict[str, Registry],
        metrics: APIServerMetrics,
        *,
        limits: MuxLimits,
        quota: ClientQuota,
        connections: ClientQuota,
        gate: Gate | None = None,
    ) -> None:
        self.registries = registries
        self.metrics = metrics
        self.gate = gate or Gate.insecure()
        self._users: dict[object, UserInfo] = {}
        """The user each upgraded connection's aiohttp protocol was made for, until its request is served."""
        self.limits = limits
        self.quota = quota
        self.per_client = connections
        self.connections: set[MuxConnection] = set()
        self.stopping = False

    def protocol(self, ws: web.Server, user: UserInfo) -> Callable[[], asyncio.Protocol]:
        """The factory of the protocol (from `ws`, the aiohttp server of `serve`) that takes over one upgraded
        connection, whose watches are then `user`'s."""
        if self.gate.authorizer is None:
            return ws

        def make() -> asyncio.Protocol:
            handler = ws()
            users = self._users
            users[handler] = user
            if len(users) > MAX_UPGRADING:  # one whose request never reached `serve` (the connection died first)
                del users[next(iter(users))]
            return handler

        return make

    async def serve(self, request: web.BaseRequest) -> web.StreamResponse:
        user = self._users.pop(request.protocol, ANONYMOUS) if self.gate.authorizer is not None else UNSECURED
        if self.stopping:
            return _closing(web.Response(status=503, text="the apiserver is shutting down"))
        client = request.remote or ""
        try:
            self.per_client.acquire(client)
        except StatusError as e:  # 429 before the upgrade
            return _closing(web.Response(body=codec.encode(e.to_status()), status=e.code,
                                         content_type="application/json",
                                         headers={"Retry-After": str(e.details.retry_after_seconds)}
                                         if e.details is not None and e.details.retry_after_seconds else None))  # fmt: skip
        try:
            return await self._serve(request, client, user)
        finally:
            self.per_client.release(client)

    async def _serve(self, request: web.BaseRequest, client: str, user: UserInfo) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=HEARTBEAT, compress=False, timeout=2.0)
        try:
            await ws.prepare(request)
        except web.HTTPException as e:  # a handshake aiohttp refuses (kos.apiserver.routes checks it first)
            return _closing(web.Response(status=e.status, text=e.text))
        conn = MuxConnection(ws, self.registries, self.metrics, limits=self.limits, quota=self.quota,
                             client=client, transport=request.transport, user=user, gate=self.gate)  # fmt: skip
        self.connections.add(conn)
        writer = asyncio.create_task(conn.writer(), name="watchmux-writer")
        conn.watch_the_client()
        try:
            while True:
                await conn.wait_for_room()
                msg = await ws.receive()
                if msg.type == WSMsgType.TEXT:
                    conn.handle(msg.data)
                    await asyncio.sleep(0)  # let a watch that needs no wait start (and count) before the next frame
                elif msg.type == WSMsgType.BINARY:
                    conn.refuse(NO_ID, BadRequest("watchmux frames are JSON text, not binary"))
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        except ConnectionError:  # aiohttp answering a ping on a connection already closing: the client is gone
            log.debug("watchmux: connection lost while receiving", client=client)
        finally:
            self.connections.discard(conn)
            stuck = conn.sending > 0
            conn.close()
            await cancel_and_wait(writer)
            if stuck and request.transport is not None:  # closed mid-write: the client stopped reading
                request.transport.abort()
        return ws

    async def shutdown(self, timeout: float) -> None:
        self.stopping = True
        conns = list(self.connections)
        if conns:
            await asyncio.gather(*(c.shutdown(timeout) for c in conns), return_exceptions=True)


def _closing(resp: web.Response) -> web.Response:
    """An answer that ends the connection: never leave it to aiohttp as an HTTP/1.1 server of its own (its bounds
    are not the layer's: no head timeout)."""
    resp.force_close()
    return resp
