"""Watch events as the client sees them, and the one decoder from watch lines to them.

`WatchEvent` is what `Client.watch` yields and what reflectors consume. `EventDecoder`
turns one line (framed as `kos.api.watchframe` says) into a `WatchEvent` of a given
type; it is built once per watch, so the per-event path is one bound-method call,
two msgspec decodes and no lookups. With a shared cache (`Client(share_events=True)`,
used by simulated nodes whose many watches receive the same lines) a line seen
before returns the event it decoded to, without decoding again.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import msgspec

from kos.api import watchframe
from kos.api.errors import StatusError
from kos.api.meta import Status
from kos.api.watchframe import ADDED, BOOKMARK, DELETED, ERROR, MODIFIED

__all__ = ["ADDED", "BOOKMARK", "DELETED", "ERROR", "INITIAL_EVENTS_END", "MODIFIED", "EventDecoder", "WatchEvent"]

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
SHARED_EVENTS = 4096
"""Event lines a shared cache remembers at most (~1 KB each for a NetworkAttachment)."""
_EVICT = SHARED_EVENTS // 4
"""When full, the oldest quarter goes at once: `next(iter(d))` after many deletions from a dict's front
skips their holes (~700 of them on average here, 3.7 µs per eviction measured), a batch pays that once."""


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK."""
    object: Any
    """The object (None for a BOOKMARK)."""
    resource_version: str
    initial_events_end: bool = False
    """A BOOKMARK that ends the initial state of a streaming list (`send_initial_events`)."""


class _Meta(msgspec.Struct, rename="camel", gc=False):
    resource_version: str = ""
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class _PartialObject(msgspec.Struct, gc=False):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


_PARTIAL = msgspec.json.Decoder(_PartialObject)
_STATUS = msgspec.json.Decoder(Status)


class EventDecoder:
    """Decode the lines of one watch of objects of one type.

    `decode(line)` returns a `WatchEvent`; an ERROR line raises the `StatusError` its `Status`
    names (a 410 Gone as `Expired`/`Gone`), and a line that is not a watch event of this type
    raises `msgspec.DecodeError` or `msgspec.ValidationError` (both ValueErrors). `received`
    counts the object events (not bookmarks) decoded or found in the shared cache.
    """

    __slots__ = ("_decode_object", "_shared", "received")

    def __init__(self, object_decoder: msgspec.json.Decoder[Any], shared: dict[bytes, WatchEvent] | None) -> None:
        self._decode_object = object_decoder.decode
        self._shared = shared
        self.received = 0

    def decode(self, line: bytes) -> WatchEvent:
        shared = self._shared
        if shared is not None:
            got = shared.get(line)
            if got is not None:
                self.received += 1
                return got
        ev = watchframe.decode(line)
        typ = ev.type
        if typ == BOOKMARK:
            meta = _PARTIAL.decode(ev.object).metadata
            return WatchEvent(BOOKMARK, None, meta.resource_version, meta.annotations.get(INITIAL_EVENTS_END) == "true")
        if typ == ERROR:
            raise StatusError.from_status(_STATUS.decode(ev.object))
        obj = self._decode_object(ev.object)
        self.received += 1
        out = WatchEvent(typ, obj, obj.metadata.resource_version)
        if shared is not None:
            if len(shared) >= SHARED_EVENTS:  # the oldest: the lines of one change arrive together
                for old in list(itertools.islice(shared, _EVICT)):
                    del shared[old]
            shared[line] = out
        return out
