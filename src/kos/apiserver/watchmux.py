"""Many watches over one connection: a WebSocket that multiplexes watch streams (a kos extension).

Kubernetes clients multiplex watches over HTTP/2; over HTTP/1.1 every watch
needs its own TCP connection. At 1,000 nodes with a watch per relevant VNI that
is tens of thousands of sockets — past a process's file-descriptor limit — and a
socket write per event per watch. This endpoint carries any number of watches
on one WebSocket, `/apis/network.example.com/v1alpha1/watchmux`:

    client → server (JSON text):  {"op": "watch", "id": 7, "resource": "networkattachments",
                                   "namespace": "ns" (optional), "labelSelector": "...",
                                   "fieldSelector": "...", "resourceVersion": "...",
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
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from kos.api import codec, errors
from kos.api.errors import BadRequest, StatusError
from kos.api.resources import BY_PLURAL
from kos.apiserver import listoptions, params, urlparts
from kos.apiserver.metrics import APIServerMetrics
from kos.apiserver.registry import Registry
from kos.apiserver.watchers import Watcher

log = logging.getLogger(__name__)

PENDING_LIMIT = 32 << 20
"""Bytes queued for one connection before its watchers' lines wait in the watchers instead."""
DEFAULT_TIMEOUT = (1800, 3600)


class _Params:
    """A watch request's parameters, read like query parameters (JSON true/false and integers as their text)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def get(self, name: str, default: Any = None) -> Any:
        v = self._d.get(name, default)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int) and not -params.INT64_MAX - 1 <= v <= params.INT64_MAX:
            raise BadRequest(f"invalid value for {name}: an integer out of range for a 64-bit integer")
        return v if v is None or isinstance(v, str) else str(v)


class MuxConnection:
    def __init__(self, ws: web.WebSocketResponse, registries: dict[str, Registry], metrics: APIServerMetrics) -> None:
        self.ws = ws
        self.registries = registries
        self.metrics = metrics
        self.watches: dict[int, tuple[Registry, Watcher, asyncio.TimerHandle]] = {}
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.blocked: set[int] = set()
        self.wakeup = asyncio.Event()
        self.closed = False

    # --- the outbound side -------------------------------------------------------------------

    def _enqueue(self, record: bytes, size: int) -> None:
        self.pending.append(record)
        self.pending_bytes += size
        self.wakeup.set()

    def _sink(self, wid: int) -> Callable[[bytes], bool]:
        def sink(data: bytes) -> bool:
            if self.closed:
                return False
            if self.pending_bytes > PENDING_LIMIT:
                self.blocked.add(wid)
                return False
            self._enqueue(b"%d %d\n%b" % (wid, len(data), data), len(data))
            return True

        return sink

    async def writer(self) -> None:
        while not self.closed:
            await self.wakeup.wait()
            self.wakeup.clear()
            if not self.pending:
                continue
            data = b"".join(self.pending)
            self.pending.clear()
            self.pending_bytes = 0
            await self.ws.send_bytes(data)
            if self.blocked:
                retry, self.blocked = self.blocked, set()
                for wid in retry:
                    entry = self.watches.get(wid)
                    if entry is not None:
                        entry[1].flush()

    # --- watches -----------------------------------------------------------------------------

    async def start(self, msg: dict[str, Any]) -> None:
        wid = msg.get("id")
        if not isinstance(wid, int) or isinstance(wid, bool) or not 0 <= wid <= params.INT64_MAX:
            raise BadRequest("a watch needs an integer id from 0 to 2^63-1")
        if wid in self.watches:
            raise BadRequest(f"watch {wid} is already open on this connection")
        res = BY_PLURAL.get(str(msg.get("resource", "")))
        if res is None:
            raise BadRequest(f"unknown resource {msg.get('resource')!r}")
        opts, timeout = listoptions.watch_options(_Params(msg), res)
        if timeout is None:
            timeout = random.randint(*DEFAULT_TIMEOUT)
        namespace = msg.get("namespace")
        if namespace is not None:  # absent (or null) is every namespace; "" is none, not every one
            if not isinstance(namespace, str) or not namespace:
                raise BadRequest("namespace must be a non-empty string; leave it out to watch every namespace")
            urlparts.segment_name(namespace, "Namespace")
        reg = self.registries[res.plural]
        try:
            w = await reg.watch(namespace, opts)
        except errors.Gone as gone:
            line = b'{"type":"ERROR","object":' + codec.encode(gone.to_status()) + b"}\n"
            self._enqueue(b"%d %d\n%b" % (wid, len(line), line), len(line))
            self._end(wid)
            return
        if self.closed:
            reg.stop_watch(w)
            return
        timer = asyncio.get_running_loop().call_later(timeout, self.end, wid)
        self.watches[wid] = (reg, w, timer)
        self.metrics.watchers.labels(res.plural).inc()
        w.on_close = lambda: self.end(wid)
        w.sink = self._sink(wid)
        w.flush()

    def _end(self, wid: int) -> None:
        self._enqueue(b"%d 0\n" % wid, 0)

    def end(self, wid: int) -> None:
        entry = self.watches.pop(wid, None)
        if entry is None:
            return
        reg, w, timer = entry
        timer.cancel()
        w.on_close = None
        if w.buffer and not self.closed:
            w.flush()  # what the watcher still holds goes out before the end record
        reg.stop_watch(w)
        self.metrics.watchers.labels(reg.resource.plural).dec()
        self.metrics.watch_events.labels(reg.resource.plural).inc(w.sent_events)
        self.metrics.watch_bytes.labels(reg.resource.plural).inc(w.sent_bytes)
        if w.close_reason:
            self.metrics.slow_watchers.labels(reg.resource.plural).inc()
        if not self.closed:
            self._end(wid)

    def close(self) -> None:
        for wid in list(self.watches):
            self.end(wid)
        self.closed = True
        self.wakeup.set()


async def serve(request: web.Request, registries: dict[str, Registry], metrics: APIServerMetrics) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=1 << 20, heartbeat=30.0, compress=False)
    await ws.prepare(request)
    conn = MuxConnection(ws, registries, metrics)
    writer = asyncio.create_task(conn.writer())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                body = json.loads(msg.data)
                op = body.get("op") if isinstance(body, dict) else None
                if op == "watch":
                    await conn.start(body)
                elif op == "cancel":
                    wid = body.get("id")
                    if not isinstance(wid, int) or isinstance(wid, bool):  # not int(): 1e400 would overflow
                        raise BadRequest("a cancel needs the integer id of a watch")
                    conn.end(wid)
                else:
                    raise BadRequest(f"unknown op {op!r}: use watch or cancel")
            except (StatusError, ValueError, TypeError) as e:
                err = e if isinstance(e, StatusError) else BadRequest(str(e))
                wid = body.get("id") if isinstance(body, dict) else None
                line = b'{"type":"ERROR","object":' + codec.encode(err.to_status()) + b"}\n"
                if isinstance(wid, int) and wid not in conn.watches:
                    conn._enqueue(b"%d %d\n%b" % (wid, len(line), line), len(line))
                    conn._end(wid)
                else:
                    log.info("watchmux: refused a request: %s", err)
    finally:
        conn.close()
        writer.cancel()
        try:
            await writer
        except (asyncio.CancelledError, Exception):
            pass
    return ws
