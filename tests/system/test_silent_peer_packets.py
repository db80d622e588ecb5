"""A silent apiserver whose packets are really dropped: a plain-HTTP watch notices within ~5 s and resumes on the next.

tests/integration/test_silent_peer.py silences a replica with a user-space proxy, which shows the call
timeout and the watch multiplexer's ping act — but not TCP keepalive, because the proxy's own kernel
answers the probes. Here the packets themselves are dropped: the test re-runs itself in a private network
namespace (`unshare --net`, root only) and adds an nftables rule that drops every packet to and from
replica A's port on the namespace's loopback — a partition with no FIN and no RST. A watch over plain HTTP
(one connection per watch, no ping of kos's own) then hears nothing; only the kernel's keepalive
(kos.http.clientkeepalive: probes after 2 s idle, 2 probes 1 s apart) can end it, and the reflector resumes
from its last resourceVersion on replica B without a relist. The bound in `eventually` (8 s) is a
liveness bound for the 4 s keepalive plus a failover, not a measurement.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import Subnet, SubnetSpec
from kos.client.config import ClientConfig
from kos.client.failover import FailoverTransport
from kos.client.indexer import Indexer
from kos.client.reflector import Reflector
from kos.client.rest import Client
from kos.http.clientpool import HTTPPool
from kos.testing.replicas import running_replicas
from kos.testing.wait import eventually

pytestmark = pytest.mark.system

NS = "silent"
_INSIDE = "KOS_TEST_PRIVATE_NETNS"


def _missing() -> str:
    if os.geteuid() != 0:
        return "needs root (a private network namespace and an nftables rule)"
    for tool in ("unshare", "nft", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool} (make test installs nftables as root)"
    return ""


def test_a_plain_watch_on_a_partitioned_server_resumes_on_the_next() -> None:
    why = _missing()
    if why:
        pytest.skip(why)
    r = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{__file__}::test_inside_the_namespace"],
        env={**os.environ, _INSIDE: "1"}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout, r.stdout[-2000:]


def sn(name: str, vni: int) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4=f"10.{vni}.0.0/24"))


def _nft(*args: str) -> None:
    subprocess.run(["nft", *args], check=True, capture_output=True, text=True)


@pytest.mark.skipif(os.environ.get(_INSIDE) != "1", reason="runs inside the private namespace made by the test above")
async def test_inside_the_namespace() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    seen: list[str] = []

    def on_event(typ: str, old: Subnet | None, new: Subnet | None) -> None:
        obj = new or old
        assert obj is not None
        seen.append(f"{typ} {obj.metadata.name}")

    async with (
        running_replicas(2) as (a, b),
        Client(ClientConfig.for_server(f"{a.url},{b.url}"), timeout=2.0) as client,
        Client(b.url) as writer,
    ):
        transport = client.transport
        assert isinstance(transport, FailoverTransport) and transport.server == a.url
        transport.probe_after = None  # the liveness probe would end the watch too: this test is keepalive's
        reflector: Reflector[Subnet] = Reflector(client, Subnet, Indexer(), on_event, namespace=NS)
        reflector.initial_backoff = 0.01
        task = asyncio.create_task(reflector.run())
        try:
            await writer.create(sn("before", 100))
            await eventually(lambda: seen == ["ADDED before"])
            to_a = transport.transports[0]
            assert isinstance(to_a, HTTPPool)
            await eventually(lambda: bool(to_a._streams))  # the watch: a plain HTTP stream to A
            _nft("add", "table", "inet", "kos")
            _nft("add", "chain", "inet", "kos", "out", "{ type filter hook output priority 0; }")
            _nft("add", "rule", "inet", "kos", "out", "tcp", "dport", str(a.port), "drop")
            _nft("add", "rule", "inet", "kos", "out", "tcp", "sport", str(a.port), "drop")
            await writer.create(sn("after", 101))  # A hears of it from the store; its packets are dropped
            await eventually(lambda: seen == ["ADDED before", "ADDED after"], timeout=8.0)
            assert reflector.relists == 1  # resumed from its resourceVersion on B, not listed again
            assert transport.server == b.url
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
