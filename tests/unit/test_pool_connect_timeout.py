"""A server that accepts TCP but never answers the TLS handshake (a SIGSTOPped apiserver: its kernel still
completes the TCP handshake) fails a call with a retryable ConnectionFailed once CONNECT_TIMEOUT passes,
instead of hanging until the server resumes — so the failover transport sends even a write to the next
server (no request was written). Found by `kos chaos`'s apiserver-stop."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from kos.http import clientpool
from kos.http.clientpool import HTTPPool
from kos.http.clientresponse import ConnectionFailed


async def test_a_server_silent_in_the_tls_handshake_fails_the_call_retryably(monkeypatch: pytest.MonkeyPatch) -> None:
    hold = asyncio.Event()
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await hold.wait()  # never a byte back
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(clientpool, "CONNECT_TIMEOUT", 0.2)
    p = HTTPPool(f"https://127.0.0.1:{port}", ssl=ssl.create_default_context())
    try:
        with pytest.raises(ConnectionFailed, match=r"within 0\.2s") as caught:
            await p.request("POST", "/apis/x", body=b"{}", timeout=60.0)
        assert caught.value.retryable and accepted.is_set()
    finally:
        hold.set()
        await p.close()
        server.close()
        await server.wait_closed()
