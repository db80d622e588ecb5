"""A real `kos apiserver` stops within seconds of SIGTERM, whoever is connected (issue 10, item 8).

With a watch-multiplexer client connected — the default for the controller
manager and simulated nodes — it took 43–46 s to exit (the runner's clean-up
waited for the WebSocket handler, aiohttp #2200), against 0.01 s with none. Here
a multiplexed client with several watches, a plain HTTP watch, a multiplexed
connection that never reads, an idle keep-alive connection and half a request
are all connected; the server must exit cleanly within a few seconds, and the
two well-behaved watches must end cleanly (an end record, the end of the chunked
stream), so their clients resume rather than fail.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kos.api.errors import ServiceUnavailable
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.client.rest import Client
from kos.testing.process import APIServerProcess
from kos.testing.rawsocket import read_head, read_response, request, ws_json, ws_upgrade

pytestmark = pytest.mark.system

P = "/apis/network.example.com/v1alpha1"


def na(name: str, pad: int = 0) -> NetworkAttachment:
    meta = ObjectMeta(name=name, namespace="sd", annotations={"pad": "x" * pad} if pad else {})
    return NetworkAttachment(metadata=meta, spec=NetworkAttachmentSpec(node="n1", subnet="s1"))


async def consume(c: Client, **kw: Any) -> str:
    try:
        async for _ in c.watch(NetworkAttachment, "sd", **kw):
            pass
        return "ended"
    except ServiceUnavailable as e:
        return f"failed: {e}"


async def open_watches(url: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_registered_watchers{"))  # fmt: skip


async def raw(port: int, rcvbuf: int = 0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return await asyncio.open_connection(sock=sock)


async def test_sigterm_with_watch_clients_connected_exits_within_seconds(tmp_path: Path) -> None:
    server = APIServerProcess("memory://", tmp_path / "apiserver.log", extra=["--log-level", "info"]).wait_ready()
    held: list[asyncio.StreamWriter] = []
    try:
        async with Client(server.url, watch_mux=True) as mux, Client(server.url) as plain:
            for i in range(40):
                await plain.create(na(f"a{i}", pad=4000))
            watches = [asyncio.create_task(consume(mux, resource_version="0")) for _ in range(5)]
            watches.append(asyncio.create_task(consume(plain, resource_version="0")))
            # a multiplexed connection that never reads: ~16 MB of initial lists queued for it
            r, w = await raw(server.port, rcvbuf=4096)
            held.append(w)
            w.write(ws_upgrade())
            assert (await read_head(r))[0] == 101
            w.write(b"".join(ws_json({"op": "watch", "id": i, "resource": "networkattachments",
                                      "resourceVersion": "0"}) for i in range(100)))  # fmt: skip
            # an idle keep-alive connection, and half a request
            r2, w2 = await raw(server.port)
            held.append(w2)
            w2.write(request("GET", f"{P}/namespaces/sd/networkattachments?limit=1"))
            assert (await read_response(r2))[0] == 200
            _, w3 = await raw(server.port)
            held.append(w3)
            w3.write(f"GET {P}/namespaces/sd/networkattachments HTTP/1.1\r\nHost: x\r\n".encode())
            deadline = time.monotonic() + 10
            while await open_watches(server.url) < 7 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert await open_watches(server.url) >= 7

            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            while server.proc.poll() is None and time.monotonic() - t0 < 30:
                await asyncio.sleep(0.02)
            took = time.monotonic() - t0
            assert server.proc.returncode == 0, server.log_tail()
            assert took < 8, f"the apiserver took {took:.1f} s to exit after SIGTERM"
            results = await asyncio.wait_for(asyncio.gather(*watches), 5)
            assert results == ["ended"] * 6, results
    finally:
        for w in held:
            w.close()
        server.stop()
    log = (tmp_path / "apiserver.log").read_text()
    assert "Traceback" not in log, log[-3000:]
