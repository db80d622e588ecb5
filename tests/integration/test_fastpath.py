"""The two HTTP front ends on one port: calls served by the lean one, the rest handed to aiohttp mid-connection.

Raw sockets, so the tests control exactly what shares a connection: keep-alive
calls, pipelined calls, a watch after calls on the same connection, discovery
after calls, `Connection: close`, and a pipelined request that cannot be handed
over (a clear 400, nothing changed).
"""

from __future__ import annotations

import asyncio
import json

from kos.apiserver.server import APIServer

P = "/apis/network.example.com/v1alpha1"
SUBNETS = f"{P}/namespaces/fp/subnets"


def request(method: str, path: str, body: dict[str, object] | None = None, *, close: bool = False) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + data


def subnet(name: str, vni: int) -> dict[str, object]:
    return {"apiVersion": "network.example.com/v1alpha1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"vni": vni, "ipv4": f"10.{vni}.0.0/24"}}  # fmt: skip


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    line = await asyncio.wait_for(reader.readline(), 5)
    status = int(line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = b""
    return status, headers, body


async def test_keep_alive_calls_then_a_watch_on_the_same_connection(server: APIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request("POST", SUBNETS, subnet("a", 11)))
        status, _, body = await read_response(reader)
        assert status == 201 and json.loads(body)["metadata"]["name"] == "a"
        writer.write(request("GET", f"{SUBNETS}/a"))
        status, _, body = await read_response(reader)
        assert status == 200
        rv = json.loads(body)["metadata"]["resourceVersion"]
        # now a watch on this connection: aiohttp takes it over and streams
        writer.write(request("GET", f"{SUBNETS}?watch=true&resourceVersion={rv}"))
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers.get("transfer-encoding") == "chunked"
        # a change made elsewhere arrives on the stream
        r2, w2 = await asyncio.open_connection("127.0.0.1", server.port)
        w2.write(request("POST", SUBNETS, subnet("b", 12), close=True))
        assert (await read_response(r2))[0] == 201
        w2.close()
        size = int((await asyncio.wait_for(reader.readline(), 5)).strip(), 16)
        event = json.loads(await reader.readexactly(size))
        assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "b"
    finally:
        writer.close()


async def test_pipelined_calls_are_answered_in_order(server: APIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"".join(request("POST", SUBNETS, subnet(f"p{i}", 20 + i)) for i in range(5))
                     + request("GET", f"{SUBNETS}/p4") + request("GET", f"{SUBNETS}/nope"))  # fmt: skip
        for i in range(5):
            status, _, body = await read_response(reader)
            assert status == 201 and json.loads(body)["metadata"]["name"] == f"p{i}"
        assert (await read_response(reader))[0] == 200
        status, _, body = await read_response(reader)
        assert status == 404 and json.loads(body)["kind"] == "Status"
    finally:
        writer.close()


async def test_discovery_after_calls_and_connection_close(server: APIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request("GET", SUBNETS))
        assert (await read_response(reader))[0] == 200
        writer.write(request("GET", P))  # discovery: aiohttp's
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["kind"] == "APIResourceList"
        writer.write(request("GET", SUBNETS, close=True))  # aiohttp serves the rest of this connection
        assert (await read_response(reader))[0] == 200
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request("GET", SUBNETS, close=True))
        assert (await read_response(reader))[0] == 200
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the lean front end closes as asked
    finally:
        writer.close()


async def test_a_watch_pipelined_behind_a_call_gets_a_clear_error(server: APIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request("POST", SUBNETS, subnet("x", 30)) + request("GET", f"{SUBNETS}?watch=1"))
        assert (await read_response(reader))[0] == 201
        status, _, body = await read_response(reader)
        assert status == 400 and "connection of its own" in json.loads(body)["message"]
    finally:
        writer.close()


async def test_oversized_and_chunked_bodies_go_to_aiohttp(server: APIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        big = b"x" * ((1 << 20) + 10)
        writer.write(f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(big)}\r\n\r\n".encode() + big)  # fmt: skip
        status, _, body = await read_response(reader)
        assert status == 413 and json.loads(body)["kind"] == "Status"
    finally:
        writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        data = json.dumps(subnet("c", 40)).encode()
        writer.write(f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Transfer-Encoding: chunked\r\n\r\n{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")  # fmt: skip
        assert (await read_response(reader))[0] == 201
    finally:
        writer.close()
