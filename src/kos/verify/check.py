"""`kos verify`: read the system from the API (and the nodes' fabrics) and list every invariant violation."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from kos.api.errors import StatusError
from kos.api.types import IPLock, NetworkAttachment, Subnet
from kos.client.rest import Client, ClientConfig
from kos.util.clock import REAL_CLOCK, Clock
from kos.verify.fabric import fabric_violations
from kos.verify.history import AddressHistory, follow
from kos.verify.invariants import address_violations, ownerless_locks, readiness_violations, subnet_violations


@dataclasses.dataclass(slots=True)
class Snapshot:
    """Every object of the three kinds at one revision."""

    subnets: list[Subnet]
    nas: list[NetworkAttachment]
    locks: list[IPLock]
    revision: str


async def snapshot(client: Client) -> Snapshot:
    """Every object of the three kinds at one revision (a consistent snapshot)."""
    for _ in range(5):
        _, rv = await client.list(Subnet, limit=1)
        try:
            subnets, _ = await client.list(Subnet, resource_version=rv, resource_version_match="Exact")
            nas, _ = await client.list(NetworkAttachment, resource_version=rv, resource_version_match="Exact")
            locks, _ = await client.list(IPLock, resource_version=rv, resource_version_match="Exact")
            return Snapshot(subnets, nas, locks, rv)
        except StatusError:
            continue  # the revision left the server's history meanwhile: take another
    subnets, _ = await client.list(Subnet)
    nas, rv = await client.list(NetworkAttachment)
    locks, _ = await client.list(IPLock)
    return Snapshot(subnets, nas, locks, rv)


async def fabric_states(endpoint: str, session: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    base = endpoint.rstrip("/")
    async with session.get(f"{base}/nodes") as r:
        r.raise_for_status()
        nodes = await r.json()
    sem = asyncio.Semaphore(32)

    async def one(node: str) -> tuple[str, dict[str, Any]]:
        async with sem, session.get(f"{base}/nodes/{node}/fabric") as r:
            r.raise_for_status()
            return node, await r.json()

    return dict(await asyncio.gather(*(one(n["node"]) for n in nodes)))


@dataclasses.dataclass(slots=True)
class Report:
    violations: list[str]
    ownerless: list[str]
    """IPLocks without an owner: their addresses are taken (not free), which is not a violation."""
    revision: str


def nodes_session(nodes_ssl: ssl.SSLContext | None) -> aiohttp.ClientSession:
    """A session for the nodes endpoint (`kos simnodes --listen`): https verified against `nodes_ssl` (its CA;
    None: the system's CAs)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=nodes_ssl if nodes_ssl is not None else True))


FabricStates = Callable[[], Awaitable[dict[str, dict[str, Any]]]]
"""Reads every node's fabric: node → {"local": [{vni, guest_ip, name}], "remote": [{vni, guest_ip, host_ip}],
"problems": [str]} (the nodes endpoint's shape; "problems" optional)."""


async def violations(
    server: str | ClientConfig, nodes_endpoint: str | None = None, *, require_ready: bool = True,
    nodes_ssl: ssl.SSLContext | None = None, read_fabrics: FabricStates | None = None,
) -> Report:  # fmt: skip
    """Every invariant violation in the system at one revision; the nodes' fabrics too with `nodes_endpoint`
    (verified against `nodes_ssl` over https) or `read_fabrics` (read after the snapshot: real switches)."""
    async with Client(server, user_agent="kos-verify") as client:
        snap = await snapshot(client)
    out = address_violations(snap.nas, snap.locks) + subnet_violations(snap.subnets)
    out += readiness_violations(snap.nas, snap.subnets, snap.locks, require_implemented=require_ready)
    if nodes_endpoint:
        async with nodes_session(nodes_ssl) as session:
            states = await fabric_states(nodes_endpoint, session)
        out += fabric_violations(snap.nas, states)
    elif read_fabrics is not None:
        out += fabric_violations(snap.nas, await read_fabrics())
    return Report(out, ownerless_locks(snap.locks), snap.revision)


async def watch_addresses(
    server: str | ClientConfig, revision: str, seconds: float, *, clock: Clock = REAL_CLOCK
) -> list[str]:
    """Invariant 1 at every revision for `seconds` of `clock` after `revision`: each moment two NAs showed one
    address."""
    async with Client(server, user_agent="kos-verify") as client:
        nas, _ = await client.list(NetworkAttachment, resource_version=revision, resource_version_match="Exact")
        history = AddressHistory(nas, revision)
        await follow(client, history, seconds, clock=clock)
    return history.violations


async def trace(
    server: str | ClientConfig, nodes_endpoint: str, src: str, dst: str, *, nodes_ssl: ssl.SSLContext | None = None
) -> dict[str, Any]:
    """Ask the simulated fabric whether NA `src` reaches NA `dst` (both `namespace/name`), and why not (the
    nodes endpoint verified against `nodes_ssl` over https)."""
    async with Client(server, user_agent="kos-trace") as client:
        ns1, _, n1 = src.partition("/")
        ns2, _, n2 = dst.partition("/")
        a = await client.get(NetworkAttachment, ns1, n1)
        b = await client.get(NetworkAttachment, ns2, n2)
    if not a.status.ifc_name:
        return {"reachable": False, "stage": "source", "why": f"{src} is not implemented on {a.spec.node} yet"}
    if not b.status.ipv4:
        return {"reachable": False, "stage": "destination", "why": f"{dst} has no address"}
    async with (
        nodes_session(nodes_ssl) as session,
        session.get(
            nodes_endpoint.rstrip("/") + "/trace",
            params={"node": a.spec.node, "interface": a.status.ifc_name, "ip": b.status.ipv4},
        ) as r,
    ):
        result: dict[str, Any] = await r.json()
        return result
