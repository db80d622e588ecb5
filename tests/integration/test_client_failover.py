"""A client given two apiservers over one store keeps working when one stops (issue 13, Deliver 3).

Two in-process apiservers share one memory store, as two replicas share one etcd: each has its own watch
cache fed by the store's watch. A `Client` made with both URLs sends everything to the first; when it
stops, calls go to the second (a write refused before it was sent is sent there too), and a reflector's
watch resumes there from its last resourceVersion — no relist, and every event exactly once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from kos.api.errors import ServiceUnavailable
from kos.api.meta import ObjectMeta
from kos.api.types import Subnet, SubnetSpec
from kos.apiserver.server import APIServer
from kos.client.config import ClientConfig
from kos.client.failover import FailoverTransport
from kos.client.indexer import Indexer
from kos.client.reflector import Reflector
from kos.client.rest import Client
from kos.pki.authority import issue_client, issue_server, new_ca
from kos.pki.kubeconfig import SERVERS_EXTENSION, kubeconfig
from kos.testing.replicas import running_replicas
from kos.testing.wait import eventually

NS = "failover"


def sn(name: str, vni: int) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4=f"10.{vni}.0.0/24"))


@pytest.fixture
async def replicas() -> AsyncIterator[list[APIServer]]:
    async with running_replicas(2) as servers:
        yield servers


@pytest.mark.parametrize("watch_mux", [False, True], ids=["http-watch", "watchmux"])
async def test_calls_and_a_watch_move_to_the_second_server_when_the_first_stops(
    replicas: list[APIServer], watch_mux: bool
) -> None:
    a, b = replicas
    seen: list[tuple[str, str, str]] = []

    def on_event(typ: str, old: Subnet | None, new: Subnet | None) -> None:
        obj = new or old
        assert obj is not None
        seen.append((typ, obj.metadata.name, obj.metadata.resource_version))

    async with Client(ClientConfig.for_server(f"{a.url},{b.url}"), watch_mux=watch_mux) as client:
        transport = client.transport
        assert isinstance(transport, FailoverTransport) and transport.server == a.url
        reflector: Reflector[Subnet] = Reflector(client, Subnet, Indexer(), on_event, namespace=NS)
        reflector.initial_backoff = 0.01
        task = asyncio.create_task(reflector.run())
        try:
            written = [await client.create(sn("s0", 100))]
            await eventually(lambda: len(seen) == 1)
            await a.stop()
            # refused by the stopped server before anything was sent: created on the second one
            written.append(await client.create(sn("s1", 101)))
            assert transport.server == b.url and transport.failovers == 1
            written.append(await client.patch(Subnet, NS, "s0", {"metadata": {"labels": {"moved": "yes"}}}))
            got = await client.get(Subnet, NS, "s1")
            assert got.metadata.uid == written[1].metadata.uid
            await eventually(lambda: len(seen) == 3)
            expected = [("ADDED", "s0", written[0].metadata.resource_version),
                        ("ADDED", "s1", written[1].metadata.resource_version),
                        ("MODIFIED", "s0", written[2].metadata.resource_version)]  # fmt: skip
            assert seen == expected  # nothing lost, nothing twice
            assert reflector.relists == 1  # the first list only: the watch resumed from its revision
            assert reflector.resource_version == written[2].metadata.resource_version
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_write_cut_off_after_it_was_sent_is_not_sent_to_the_next_server(replicas: list[APIServer]) -> None:
    """The first "server" reads the request and closes without answering: it may have applied it, so the
    client reports ServiceUnavailable rather than creating it a second time on B (client-go does the same)."""
    b = replicas[1]
    heads: list[bytes] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Client(ClientConfig.for_server(f"http://127.0.0.1:{port},{b.url}")) as client:
            with pytest.raises(ServiceUnavailable):
                await client.create(sn("once", 100))
            assert len(heads) == 1 and heads[0].startswith(b"POST ")
            assert (await client.list(Subnet, NS))[0] == []  # B never saw it; and the list went to B
            assert isinstance(client.transport, FailoverTransport) and client.transport.server == b.url
    finally:
        server.close()
        await server.wait_closed()


async def test_a_kubeconfig_listing_two_tls_replicas_fails_over_with_the_same_ca_and_certificate(
    tmp_path: Path,
) -> None:
    """The `kos.example.com/servers` extension: both replicas verified against the cluster's CA, the user's
    client certificate (required by the servers) presented to each."""
    ca = new_ca("kos-test-ca")
    serving = issue_server(ca, "kos-apiserver", ["localhost"], [ipaddress.ip_address("127.0.0.1")])
    crt, key = tmp_path / "apiserver.crt", tmp_path / "apiserver.key"
    crt.write_bytes(serving.cert_pem())
    key.write_bytes(serving.key_pem())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    ctx.load_verify_locations(cadata=ca.cert_pem().decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    async with running_replicas(2, ssl=ctx) as (a, b):
        alice = issue_client(ca, "alice", ["kos:test"])
        path = tmp_path / "alice.kubeconfig"
        path.write_bytes(kubeconfig(a.url, ca.cert_pem(), alice, "alice", servers=[a.url, b.url]))
        assert yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["extensions"] == [
            {"name": SERVERS_EXTENSION, "extension": {"servers": [a.url, b.url]}}
        ]
        async with Client.from_kubeconfig(path) as client:
            assert client.config.endpoints == (a.url, b.url)
            await client.create(sn("tls", 100))
            await a.stop()
            assert (await client.get(Subnet, NS, "tls")).metadata.name == "tls"
            assert isinstance(client.transport, FailoverTransport) and client.transport.server == b.url
