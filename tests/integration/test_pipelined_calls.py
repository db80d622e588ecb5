"""Calls and everything else on one keep-alive connection, served in order by the one HTTP layer (kos.http).

Raw sockets, so the tests control exactly what shares a connection: keep-alive
calls, pipelined calls, a watch after calls on the same connection, discovery
after calls, `Connection: close`, and every kind of request pipelined behind a
call in one packet — health, metrics, discovery, a chunked body, a watch, a
WebSocket upgrade with its first frame — each answered in order.
"""

from __future__ import annotations

import asyncio
import json

from kos.apiserver.server import APIServer
from kos.testing.rawsocket import (
    mux_records,
    read_chunks,
    read_head,
    read_response,
    request,
    ws_json,
    ws_message,
    ws_upgrade,
)

P = "/apis/network.example.com/v1alpha1"
SUBNETS = f"{P}/namespaces/fp/subnets"


def subnet(name: str, vni: int) -> dict[str, object]:
    return {"apiVersion": "network.example.com/v1alpha1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"vni": vni, "ipv4": f"10.{vni}.0.0/24"}}  # fmt: skip


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
        status, headers = await read_head(reader)
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


async def test_everything_pipelined_behind_a_call_is_answered_in_order(server: APIServer) -> None:
    """Health, metrics, discovery, calls, a chunked create, a watch and a closing call, all in one packet.

    The lean front end cannot hand a request that begins mid-read to aiohttp as raw bytes (httptools
    does not say where it begins); it used to answer such a request 400.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        chunked = json.dumps(subnet("pc", 41)).encode()
        writer.write(
            request("POST", SUBNETS, subnet("pa", 40))
            + request("GET", "/healthz")
            + request("GET", "/metrics")
            + request("GET", P)
            + request("GET", "/version")
            + request("GET", f"{SUBNETS}/pa")
            + f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Transfer-Encoding: chunked\r\n\r\n{len(chunked):x}\r\n".encode() + chunked + b"\r\n0\r\n\r\n"
            + request("GET", f"{SUBNETS}?watch=1&timeoutSeconds=1")
            + request("GET", "/readyz")
            + request("GET", f"{SUBNETS}/pc", close=True)
        )  # fmt: skip
        status, _, body = await read_response(reader)
        assert status == 201 and json.loads(body)["metadata"]["name"] == "pa"
        assert (await read_response(reader))[::2] == (200, b"ok")
        status, _, body = await read_response(reader)
        assert status == 200 and b"apiserver_request_total" in body
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["kind"] == "APIResourceList"
        assert (await read_response(reader))[0] == 200
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["metadata"]["name"] == "pa"
        status, _, body = await read_response(reader)
        assert status == 201 and json.loads(body)["metadata"]["name"] == "pc"
        status, headers = await read_head(reader)
        assert status == 200 and headers.get("transfer-encoding") == "chunked"
        events = [json.loads(line) for line in (await read_chunks(reader, 10)).splitlines()]
        assert {(e["type"], e["object"]["metadata"]["name"]) for e in events} == {("ADDED", "pa"), ("ADDED", "pc")}
        assert (await read_response(reader))[::2] == (200, b"ok")
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["metadata"]["name"] == "pc"
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_a_pipelined_request_split_across_reads_is_forwarded_whole(server: APIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        second = request("GET", "/healthz", headers={"X-Pad": "y" * 300})
        writer.write(request("POST", SUBNETS, subnet("sp", 42)) + second[:40])
        await writer.drain()
        assert (await read_response(reader))[0] == 201
        await asyncio.sleep(0.05)  # a pause, so the server reads the parts separately: the split is the point
        writer.write(second[40:200])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(second[200:] + request("GET", f"{SUBNETS}/sp"))
        assert (await read_response(reader))[::2] == (200, b"ok")
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["metadata"]["name"] == "sp"
    finally:
        writer.close()


async def test_the_watch_multiplexer_upgraded_in_the_same_packet_as_a_call(server: APIServer) -> None:
    """The upgrade and the first WebSocket frame share a packet with a call: the frame reaches the multiplexer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        subscribe = ws_json({"op": "watch", "id": 5, "resource": "subnets", "resourceVersion": "0"})
        writer.write(request("POST", SUBNETS, subnet("up", 43)) + ws_upgrade() + subscribe)
        assert (await read_response(reader))[0] == 201
        status, headers = await read_head(reader)
        assert status == 101 and headers.get("upgrade", "").lower() == "websocket"
        opcode, data = await ws_message(reader)
        assert opcode == 2
        (wid, line), *_ = mux_records(data)
        event = json.loads(line)
        assert wid == 5 and event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "up"
    finally:
        writer.close()


async def test_errors_behind_forwarded_requests_are_never_misattributed(server: APIServer) -> None:
    big = 2 << 20
    huge = f"POST {SUBNETS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {big}\r\n\r\n"
    # the oversized request is the first one forwarded: it is answered 413 after the call before it
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request("POST", SUBNETS, subnet("ea", 44)) + huge.encode() + b"{")
        assert (await read_response(reader))[0] == 201
        status, _, body = await read_response(reader)
        assert status == 413 and json.loads(body)["reason"] == "RequestEntityTooLarge"
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    # behind a health check: every request is answered in order, the refusal last, then the connection closes
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request("GET", f"{SUBNETS}/ea") + request("GET", "/healthz") + huge.encode() + b"{")
        assert (await read_response(reader))[0] == 200
        assert (await read_response(reader))[::2] == (200, b"ok")
        status, _, body = await read_response(reader)
        assert status == 413 and json.loads(body)["reason"] == "RequestEntityTooLarge"
        assert await asyncio.wait_for(reader.read(), 5) == b""
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
