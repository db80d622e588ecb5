"""Kubernetes' watch-event framing: one JSON object per line, `{"type": T, "object": O}` then a newline.

Every server path that sends watch events (the HTTP watch stream, the watch
multiplexer, the watch cache's pre-encoded lines, bookmarks, errors) frames
them here, so a line is the same bytes whichever way it travels. The source is k8s.io/apimachinery/pkg/watch
(`EventType`: ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) and the JSON
`metav1.WatchEvent` its streaming encoder writes, one per line.
"""

from __future__ import annotations

ADDED = b"ADDED"
MODIFIED = b"MODIFIED"
DELETED = b"DELETED"
BOOKMARK = b"BOOKMARK"
ERROR = b"ERROR"


def event_line(event_type: bytes, obj: bytes) -> bytes:
    """One event line: `event_type` (ADDED …), `obj` the object's JSON (not re-encoded), a trailing newline."""
    return b'{"type":"' + event_type + b'","object":' + obj + b"}\n"


def error_line(status: bytes) -> bytes:
    """An ERROR event carrying `status`, the JSON of a metav1.Status (a 410 Gone for a too-old resourceVersion)."""
    return b'{"type":"ERROR","object":' + status + b"}\n"
