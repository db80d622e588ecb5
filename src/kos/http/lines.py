"""Newline-delimited streams cut back into lines as their bytes arrive: `LineSplitter`.

A streamed body made of lines — a Kubernetes watch (one JSON event per line, kos.api.watchframe), etcd's
JSON gateway watch (one `{"result": …}` object per line, kos.storage.etcd_gateway) — reaches a client in
chunks that do not line up with its lines: a chunk may end inside a line, or hold many. The HTTP client
(kos.http.clientpool) cuts each watch body with a `LineSplitter` as it is parsed, so a reader gets whole
lines in batches whatever the framing inside them. Pure data, no I/O.
"""

from __future__ import annotations

__all__ = ["LINE_END", "LineSplitter"]

LINE_END = b"\n"
"""What ends a line (a JSON text never holds a raw newline: strings escape it)."""


class LineSplitter:
    """Cut a stream of byte chunks into whole lines, keeping a partial last line for the next chunk.

    `feed(chunk)` returns the lines completed by `chunk`, without their newline, blank ones
    (keep-alive newlines) left out; `tail` is the incomplete remainder. A chunk that
    completes no line costs one `find`.
    """

    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        if self.tail:
            chunk = self.tail + chunk
        end = chunk.rfind(LINE_END)
        if end < 0:
            self.tail = chunk
            return []
        self.tail = chunk[end + 1 :]
        lines = chunk[:end].split(LINE_END)
        if b"" in lines:
            lines = [ln for ln in lines if ln]
        return lines
