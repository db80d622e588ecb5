"""kos.http.probes: the /metrics and health helper every kos process serves its probes with."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from kos.http.messages import Reply, Request, Response
from kos.http.probes import serve_probes
from kos.testing.rawsocket import read_response, request


async def _get(port: int, *reqs: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(reqs))
        return [await read_response(reader) for _ in reqs]
    finally:
        writer.close()


async def test_metrics_health_readiness_and_own_routes() -> None:
    registry = CollectorRegistry()
    Counter("kos_probe_test_total", "a counter", registry=registry).inc(3)
    ready = False

    async def nodes(req: Request) -> Response:
        return Reply(200, f'{{"path":"{req.path}","query":"{req.query}"}}'.encode())

    server = await serve_probes("127.0.0.1", 0, registry, readyz=lambda: None if ready else "agents starting",
                                routes={"/nodes": nodes, "/nodes/": nodes})  # fmt: skip
    try:
        (m, h, r, n, sub, missing, post) = await _get(
            server.port,
            request("GET", "/metrics"),
            request("GET", "/healthz"),
            request("GET", "/readyz"),
            request("GET", "/nodes?x=1"),
            request("GET", "/nodes/n1/fabric"),
            request("GET", "/nothing"),
            request("POST", "/healthz", b"{}"),
        )
        assert m[0] == 200 and b"kos_probe_test_total 3.0" in m[2]
        assert m[1]["content-type"].startswith("text/plain")
        assert h[::2] == (200, b"ok")
        assert r[::2] == (503, b"agents starting")
        assert n[::2] == (200, b'{"path":"/nodes","query":"x=1"}')
        assert sub[::2] == (200, b'{"path":"/nodes/n1/fabric","query":""}')
        assert missing[0] == 404 and post[0] == 405
        ready = True
        ((status, _, body),) = await _get(server.port, request("GET", "/readyz"))
        assert (status, body) == (200, b"ok")
    finally:
        await server.stop(1.0)


async def test_a_custom_health_text() -> None:
    server = await serve_probes("127.0.0.1", 0, CollectorRegistry(), healthz=lambda: "starting")
    try:
        ((status, _, body),) = await _get(server.port, request("GET", "/healthz"))
        assert (status, body) == (200, b"starting")
    finally:
        await server.stop(1.0)


async def test_a_malformed_request_gets_a_plain_400_and_the_connection_closes() -> None:
    server = await serve_probes("127.0.0.1", 0, CollectorRegistry())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request("GET", "/healthz") + b"GET / HTTP/1.1\r\nno colon\r\n\r\n")
        assert (await read_response(reader))[::2] == (200, b"ok")
        status, _, body = await read_response(reader)
        assert status == 400 and body.startswith(b"malformed HTTP request")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await server.stop(1.0)
