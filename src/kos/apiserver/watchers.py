"""Watchers and the index that makes fan-out cost O(interested watchers).

A watcher selects objects by namespace, label selector and field selector. It
is filed under exactly one (field, value) pair that it requires — the most
selective indexed field its selector pins (for example `spec.node=node-7`, or
`status.addressVNI=42`) — or, when it pins none, in the unindexed set. An event
is offered only to the watchers filed under the event object's values (current
and previous) of each indexed field, plus the unindexed ones. kube-apiserver
does this only for pods' `spec.nodeName`; here every selectable field the
agents use is indexed.

Each watcher owns an output buffer of already-encoded lines. Everything pushed
to it in one turn of the event loop is flushed at the end of that turn as one
chunk, offered straight to the connection (`sink`) while the socket keeps up — no
task switch per event. The sink is offered the list of lines and their size, so
refusing costs nothing and accepting copies the lines once, where they are written.
When the socket's buffer is full the lines wait in the watcher and the watch
handler drains them with flow control; a watcher whose backlog grows past its
limit is closed (the client resumes from the last revision it saw, losing nothing).

A watcher's timers — its timeout (`expire_after`) and the idle time that earns it a bookmark
(`last_sent`, read by `kos.apiserver.bookmarks`) — are on the `Clock` it is given: one timer per
watch, and per flushed chunk one call of the clock's `monotonic` (which for the real clock is
`time.monotonic` itself), so nothing is added per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from kos.api.resources import Resource
from kos.api.selectors import FieldSelector, LabelSelector
from kos.util.clock import REAL_CLOCK, Clock, Timer


class Watcher:
    __slots__ = (
        "_flush_scheduled",
        "_loop",
        "_monotonic",
        "allow_bookmarks",
        "buffer",
        "buffered_bytes",
        "clock",
        "close_reason",
        "closed",
        "field_selector",
        "index_field",
        "index_value",
        "label_selector",
        "last_rev",
        "last_sent",
        "max_bytes",
        "namespace",
        "on_close",
        "render",
        "resource",
        "sent_bytes",
        "sent_events",
        "sink",
        "wakeup",
    )

    def __init__(
        self,
        resource: Resource,
        *,
        namespace: str | None,
        label_selector: LabelSelector,
        field_selector: FieldSelector,
        allow_bookmarks: bool = False,
        max_bytes: int = 64 << 20,
        render: Callable[[str, object], bytes] | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.resource = resource
        self.clock = clock
        self._monotonic = clock.monotonic
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.allow_bookmarks = allow_bookmarks
        self.max_bytes = max_bytes
        self.render = render
        """When set (Table output), renders (event type, entry) to a line instead of the shared JSON line."""
        self.buffer: list[bytes] = []
        self.buffered_bytes = 0
        self.wakeup = asyncio.Event()
        self.closed = False
        self.close_reason = ""
        self.last_rev = 0
        self.last_sent = self._monotonic()
        self.sent_events = 0
        self.sent_bytes = 0
        self.sink: Callable[[list[bytes], int], bool] | None = None
        """Takes the buffered lines (and their total size) straight to the client when it has room, copying
        them out of the list; False when it has not (then they stay here)."""
        self.on_close: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self.index_field, self.index_value = self._choose_index()

    def _choose_index(self) -> tuple[str | None, str]:
        eq = self.field_selector.equalities()
        if self.namespace is not None:
            eq.setdefault("metadata.namespace", self.namespace)
        for f in self.resource.indexed:
            if f in eq:
                return f, eq[f]
        return None, ""

    def matches(self, namespace: str, labels: dict[str, str], fields: dict[str, str]) -> bool:
        if self.namespace is not None and namespace != self.namespace:
            return False
        if self.label_selector.requirements and not self.label_selector.matches(labels):
            return False
        return self.field_selector.matches(fields)

    def push(self, line: bytes, rev: int) -> None:
        if self.closed:
            return
        self.buffer.append(line)
        self.buffered_bytes += len(line)
        self.last_rev = rev
        if self.buffered_bytes > self.max_bytes:
            self.close(f"watcher fell behind: more than {self.max_bytes} bytes unsent")
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what this turn of the loop pushed: straight to the socket if it has room, else via the handler."""
        self._flush_scheduled = False
        if not self.buffer:
            return
        sink = self.sink
        if sink is not None and not self.closed:
            buf = self.buffer
            if sink(buf, self.buffered_bytes):
                self.sent_events += len(buf)
                self.sent_bytes += self.buffered_bytes
                buf.clear()
                self.buffered_bytes = 0
                self.last_sent = self._monotonic()
                return
        self.wakeup.set()

    def expire_after(self, seconds: float, on_expiry: Callable[[], object] | None = None) -> Timer:
        """Close the watch (or call `on_expiry`) `seconds` from now on the watcher's clock: its timeoutSeconds.

        The caller cancels the returned timer when the watch ends first.
        """
        return self.clock.call_later(seconds, on_expiry or self.close)

    def close(self, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if reason:  # dropped for being slow: what is buffered is discarded; the client resumes from last_rev
            self.buffer.clear()
            self.buffered_bytes = 0
        self.wakeup.set()
        if self.on_close is not None:
            self.on_close()

    def take(self) -> bytes:
        data = b"".join(self.buffer)
        self.sent_events += len(self.buffer)
        self.sent_bytes += len(data)
        self.buffer.clear()
        self.buffered_bytes = 0
        self.last_sent = self._monotonic()
        return data


class WatcherIndex:
    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.by_field: dict[str, dict[str, set[Watcher]]] = {f: {} for f in resource.indexed}
        self.unindexed: set[Watcher] = set()
        self.count = 0

    def add(self, w: Watcher) -> None:
        if w.index_field is None:
            self.unindexed.add(w)
        else:
            self.by_field[w.index_field].setdefault(w.index_value, set()).add(w)
        self.count += 1

    def remove(self, w: Watcher) -> None:
        if w.index_field is None:
            if w in self.unindexed:
                self.unindexed.discard(w)
                self.count -= 1
            return
        bucket = self.by_field[w.index_field].get(w.index_value)
        if bucket is not None and w in bucket:
            bucket.discard(w)
            self.count -= 1
            if not bucket:
                del self.by_field[w.index_field][w.index_value]

    def candidates(self, cur: dict[str, str], prev: dict[str, str] | None) -> Iterable[Watcher]:
        """Every watcher that could care about an object changing from `prev` to `cur` field values."""
        for f, buckets in self.by_field.items():
            if not buckets:
                continue
            v = cur[f]
            s = buckets.get(v)
            if s:
                yield from s
            if prev is not None:
                pv = prev[f]
                if pv != v:
                    s = buckets.get(pv)
                    if s:
                        yield from s
        yield from self.unindexed

    def all(self) -> Iterable[Watcher]:
        for buckets in self.by_field.values():
            for s in buckets.values():
                yield from s
        yield from self.unindexed
