"""HTTP/1.1 and WebSocket by hand over a plain socket, for tests that must control every byte.

Client libraries cannot send half a request, pipeline requests into one packet,
upgrade to a WebSocket in the same packet as a call, or stop reading; these
helpers can. `request` builds one request's bytes; `read_response` reads one
response (Content-Length, chunked, or none); `ws_upgrade` and `ws_frame` build a
WebSocket handshake and client (masked) frames; `ws_messages` reads server frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

WS_PATH = "/apis/network.example.com/v1alpha1/watchmux"


def request(
    method: str,
    path: str,
    body: Any = None,
    *,
    close: bool = False,
    headers: dict[str, str] | None = None,
    version: str = "1.1",
) -> bytes:
    data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    head = f"{method} {path} HTTP/{version}\r\nHost: x\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    if close:
        head += "Connection: close\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    return head.encode() + b"\r\n" + data


async def read_head(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, dict[str, str]]:
    line = await asyncio.wait_for(reader.readline(), timeout)
    if not line:
        raise ConnectionResetError("the server closed the connection")
    status = int(line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while True:
        h = await asyncio.wait_for(reader.readline(), timeout)
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


async def read_chunks(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """A chunked body to its end."""
    out = bytearray()
    while True:
        size = int((await asyncio.wait_for(reader.readline(), timeout)).split(b";")[0].strip(), 16)
        if size == 0:
            await asyncio.wait_for(reader.readline(), timeout)
            return bytes(out)
        out += await asyncio.wait_for(reader.readexactly(size + 2), timeout)
        del out[-2:]


async def read_response(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    status, headers = await read_head(reader, timeout)
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    elif headers.get("transfer-encoding") == "chunked":
        body = await read_chunks(reader, timeout)
    else:
        body = b""
    return status, headers, body


def ws_upgrade(path: str = WS_PATH) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()  # fmt: skip


def ws_frame(payload: bytes | str, opcode: int = 1) -> bytes:
    """One client frame (FIN set, masked as RFC 6455 requires of clients); opcode 1 text, 2 binary, 8 close."""
    data = payload.encode() if isinstance(payload, str) else payload
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def ws_json(obj: Any) -> bytes:
    return ws_frame(json.dumps(obj))


async def ws_message(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, bytes]:
    """(opcode, payload) of the next server frame (servers do not mask; fragments are not joined)."""
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), timeout)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), timeout))
    elif n == 127:
        (n,) = struct.unpack("!Q", await asyncio.wait_for(reader.readexactly(8), timeout))
    return b0 & 0x0F, await asyncio.wait_for(reader.readexactly(n), timeout)


def mux_records(data: bytes) -> list[tuple[int, bytes]]:
    """The records `<id> <n>\\n<n bytes>` of a watchmux message; an end record has empty bytes."""
    out = []
    pos = 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        wid, size = data[pos:nl].split(b" ")
        n = int(size)
        out.append((int(wid), data[nl + 1 : nl + 1 + n]))
        pos = nl + 1 + n
    return out
