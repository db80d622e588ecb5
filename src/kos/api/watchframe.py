"""The framing of a watch stream: one JSON event per line, as Kubernetes sends it.

A watch response body (and each watch of the WebSocket multiplexer) is a sequence
of lines `{"type":"<TYPE>","object":<object JSON>}\\n` (kube-apiserver's
`application/json` watch encoding: `k8s.io/apimachinery/pkg/watch/json`, one
`metav1.WatchEvent` per line). Lines do not line up with the transport's chunks
or messages: a chunk may end inside a line, or hold many. This module is the one
place that knows the framing: `frame` builds a line (`error_frame` an ERROR line) — every server
path that sends events (the HTTP watch, the multiplexer, the watch cache's pre-encoded lines, bookmarks)
frames with it, so a line is the same bytes whichever way it travels — `split` reads a body known to
be whole (kos.http.lines' `LineSplitter` cuts a byte stream back into lines as it arrives), and `RawEvent`
decodes a line's type while leaving its object undecoded (the caller knows its
type). Pure data, no I/O, so the server, the client, the tests and the benchmarks
share it.
"""

from __future__ import annotations

import msgspec

from kos.http.lines import LINE_END

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"
"""The event types (`watch.EventType` in apimachinery)."""


def frame(typ: str | bytes, obj: bytes) -> bytes:
    """One watch line: `typ` (e.g. "ADDED") and the object's JSON bytes, newline included."""
    t = typ.encode() if isinstance(typ, str) else typ
    return b'{"type":"' + t + b'","object":' + obj + b"}" + LINE_END


def error_frame(status: bytes) -> bytes:
    """An ERROR line carrying `status`, the JSON of a metav1.Status (e.g. a 410 Gone for a too-old resourceVersion)."""
    return b'{"type":"ERROR","object":' + status + b"}" + LINE_END


class RawEvent(msgspec.Struct, gc=False):
    """A decoded line whose object is still JSON bytes (`msgspec.Raw`), to be decoded as its type."""

    type: str
    object: msgspec.Raw


_RAW = msgspec.json.Decoder(RawEvent)


def decode(line: bytes) -> RawEvent:
    """The type and raw object of one line. Raises `msgspec.DecodeError` (a ValueError) if it is not a watch event."""
    return _RAW.decode(line)


def split(body: bytes) -> list[bytes]:
    """The non-empty lines of a whole watch body (or of one multiplexer record)."""
    lines = body.splitlines()  # event JSON never holds a raw CR or LF: strings escape them
    if b"" in lines:
        lines = [ln for ln in lines if ln]
    return lines
