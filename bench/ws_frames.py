"""What writing one server WebSocket message costs: aiohttp's frame writer against wsproto's (sans-I/O).

Why: the watch multiplexer's WebSocket is the one request kos.http hands to a
library (aiohttp); a sans-I/O library driven from kos.http would remove that
hand-over, so docs/dependencies.md compares the part that runs per message.
Binary messages of the multiplexer's typical sizes, written to a transport that
discards them; medians of 5 runs of 20,000 messages, with the CPU calibration.

    .venv/bin/python bench/ws_frames.py      (wsproto is not a dependency: `pip install wsproto`)
"""

from __future__ import annotations

import asyncio
import statistics
import time

from aiohttp.http_websocket import WebSocketWriter
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage

from kos.util import calibration


class _Discard:
    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class _Protocol:
    _paused = False

    async def _drain_helper(self) -> None:
        pass


async def _aiohttp(n: int, data: bytes) -> float:
    w = WebSocketWriter(_Protocol(), _Discard(), use_mask=False)  # type: ignore[arg-type]
    t = time.perf_counter()
    for _ in range(n):
        await w.send_frame(data, 0x2)
    return (time.perf_counter() - t) / n * 1e6


def _wsproto(n: int, data: bytes) -> float:
    c = Connection(ConnectionType.SERVER)
    out = _Discard()
    t = time.perf_counter()
    for _ in range(n):
        out.write(c.send(BytesMessage(data)))
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    calibration.print_calibration()
    for size in (300, 16384, 262144):
        data = b"x" * size
        a = statistics.median(asyncio.run(_aiohttp(20000, data)) for _ in range(5))
        b = statistics.median(_wsproto(20000, data) for _ in range(5))
        print(f"{size:>7} B message: aiohttp send_frame {a:.2f} µs, wsproto send {b:.2f} µs")


if __name__ == "__main__":
    main()
