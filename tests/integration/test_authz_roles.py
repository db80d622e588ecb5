"""The built-in roles and the node restriction in a running apiserver, through its secure gate.

Identities come from a test-only authenticator that reads the User-Agent (`kos.testing.kubeauthz`): kos' own
programs send `kos-controller-manager` and `kos-agent/<node>`, so the real controller manager and a real
connection agent run unchanged as their identities; the tests with client certificates over TLS are in
`test_authz_tls.py`. Shown: an admin may do everything; a user in `kos:users` creates Subnets and NAs but
writes no status; node-a's agent cannot write node-b's NA, an IPAM field, delete an NA or create a Subnet; the
controller manager cannot create a Subnet or write the agent's fields; a denied multiplexed watch is an ERROR
on its id while the connection goes on. That the real controller manager and an agent do their normal work
with nothing denied is shown over TLS, with their certificates, in `test_authz_tls.py`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import msgspec
import pytest

from kos.api.errors import Forbidden
from kos.api.meta import ObjectMeta
from kos.api.types import (
    GROUP,
    IPLock,
    IPLockSpec,
    NetworkAttachment,
    NetworkAttachmentErrors,
    NetworkAttachmentSpec,
    Subnet,
    SubnetSpec,
)
from kos.apiserver.auth.authz.build import build_admission, build_authorizer
from kos.apiserver.auth.config import AuthSettings
from kos.apiserver.auth.gate import Gate
from kos.apiserver.auth.user import AUTHENTICATED, SYSTEM_MASTERS, UserInfo
from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.testing.apiserver import running_apiserver
from kos.testing.kubeauth import DenialRecorder
from kos.testing.kubeauthz import HeaderAuthenticator, user_agent_identity

NS = "ns1"
PREFIX = f"/apis/{GROUP}/v1alpha1"
OTHERS = {"root": UserInfo("root", groups=(SYSTEM_MASTERS, AUTHENTICATED)),
          "bob": UserInfo("bob", groups=("kos:users", AUTHENTICATED)),
          "carol": UserInfo("carol", groups=(AUTHENTICATED,))}  # fmt: skip


@pytest.fixture
def denials() -> DenialRecorder:
    return DenialRecorder(build_authorizer(AuthSettings()))


@pytest.fixture
async def server(denials: DenialRecorder) -> AsyncIterator[APIServer]:
    gate = Gate(HeaderAuthenticator(user_agent_identity(OTHERS), b"user-agent"), denials, build_admission())
    async with running_apiserver(gate=gate) as s:
        yield s


@pytest.fixture
async def clients(server: APIServer) -> AsyncIterator[dict[str, Client]]:
    names = ["root", "bob", "carol", "kos-agent/node-a", "kos-agent/node-b", "kos-controller-manager"]
    cs = {n: Client(server.url, user_agent=n) for n in names}
    yield cs
    for c in cs.values():
        await c.close()


def subnet(name: str = "s1", vni: int = 7) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4="10.7.0.0/24"))


def na(name: str, node: str) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS),
                             spec=NetworkAttachmentSpec(node=node, subnet="s1"))  # fmt: skip


async def forbidden(call: Awaitable[Any]) -> Forbidden:
    with pytest.raises(Forbidden) as e:
        await call
    return e.value


def with_status(obj: NetworkAttachment, **changes: Any) -> NetworkAttachment:
    return msgspec.structs.replace(obj, status=msgspec.structs.replace(obj.status, **changes))


async def test_an_admin_may_do_everything(clients: dict[str, Client]) -> None:
    root = clients["root"]
    await root.create(subnet())
    a = await root.create(na("a", "node-a"))
    a = await root.update_status(with_status(a, address_contention=True, mac_address="m", host_ip="192.0.2.1"))
    await root.patch(Subnet, NS, "s1", {"status": {"errors": ["x"]}}, subresource="status")
    await root.create(IPLock(metadata=ObjectMeta(name="l1", namespace=NS), spec=IPLockSpec()))
    await root.delete(IPLock, NS, "l1")
    await root.delete(NetworkAttachment, NS, "a")
    await root.delete(Subnet, NS, "s1")


async def test_a_user_creates_subnets_and_attachments_but_writes_no_status(clients: dict[str, Client]) -> None:
    bob = clients["bob"]
    await bob.create(subnet())
    a = await bob.create(na("a", "node-a"))
    await bob.update(msgspec.structs.replace(a, metadata=msgspec.structs.replace(a.metadata, labels={"x": "y"})))
    e = await forbidden(bob.update_status(with_status(await bob.get(NetworkAttachment, NS, "a"), ipv4="10.7.0.9")))
    assert 'User "bob" cannot update resource "networkattachments/status"' in e.message
    await forbidden(bob.patch(Subnet, NS, "s1", {"status": {"validated": True}}, subresource="status"))
    assert await bob.list(IPLock, NS) is not None
    await forbidden(bob.create(IPLock(metadata=ObjectMeta(name="l1", namespace=NS), spec=IPLockSpec())))
    await bob.delete(NetworkAttachment, NS, "a")
    await forbidden(clients["carol"].list(Subnet, NS))  # authenticated, in no group with a role


async def test_a_node_writes_only_its_own_fields_of_its_own_attachments(clients: dict[str, Client]) -> None:
    root, node_a = clients["root"], clients["kos-agent/node-a"]
    await root.create(subnet())
    mine, theirs = await root.create(na("a", "node-a")), await root.create(na("b", "node-b"))
    mine = await node_a.update_status(with_status(mine, mac_address="m", ifc_name="i", host_ip="192.0.2.1"))
    await node_a.patch(NetworkAttachment, NS, "a", {"status": {"errors": {"host": ["h"]}}}, subresource="status")

    e = await forbidden(node_a.update_status(with_status(theirs, mac_address="m")))
    st = e.to_status()
    assert st.reason == "Forbidden" and st.code == 403
    assert st.details is not None and (st.details.name, st.details.group, st.details.kind) == (
        "b", GROUP, "networkattachments")  # fmt: skip
    assert e.message.startswith(
        f'networkattachments.{GROUP} "b" is forbidden: User "system:node:node-a" cannot update resource'
        f' "networkattachments/status" in API group "{GROUP}" in the namespace "{NS}"'
    )
    assert 'the attachment is on node "node-b"' in e.message
    await forbidden(node_a.patch(NetworkAttachment, NS, "b", {"status": {"hostIP": "192.0.2.1"}}, subresource="status"))

    mine = await node_a.get(NetworkAttachment, NS, "a")
    e = await forbidden(node_a.update_status(with_status(mine, ipv4="10.7.0.9")))
    assert e.message.endswith("not status.ipv4")
    e = await forbidden(node_a.patch(NetworkAttachment, NS, "a", {"status": {"lockUID": "x"}}, subresource="status"))
    assert e.message.endswith("not status.lockUID")
    e = await forbidden(node_a.delete(NetworkAttachment, NS, "a"))
    assert 'cannot delete resource "networkattachments"' in e.message
    await forbidden(node_a.create(subnet("s2", 8)))
    await forbidden(node_a.create(na("c", "node-a")))
    await forbidden(node_a.update(mine))
    await forbidden(node_a.list(IPLock, NS))
    assert (await root.get(NetworkAttachment, NS, "b")).status.mac_address == ""
    assert [n.metadata.name for n in (await node_a.list(NetworkAttachment, NS))[0]] == ["a", "b"]


async def test_the_controller_manager_writes_only_the_address_section(clients: dict[str, Client]) -> None:
    root, cm = clients["root"], clients["kos-controller-manager"]
    await forbidden(cm.create(subnet()))
    await root.create(subnet())
    a = await root.create(na("a", "node-a"))
    errs = NetworkAttachmentErrors(ipam=("no address",))
    a = await cm.update_status(with_status(a, address_contention=True, errors=errs))
    e = await forbidden(cm.update_status(with_status(a, host_ip="192.0.2.1")))
    assert e.message.endswith("not status.hostIP")
    await forbidden(cm.delete(NetworkAttachment, NS, "a"))
    await cm.create(IPLock(metadata=ObjectMeta(name="l1", namespace=NS), spec=IPLockSpec()))
    await cm.delete(IPLock, NS, "l1")


async def test_watches_are_authorized(server: APIServer, clients: dict[str, Client]) -> None:
    with pytest.raises(Forbidden):
        async for _ in clients["kos-agent/node-a"].watch(IPLock, NS, timeout_seconds=1):
            pass
    async for _ in clients["kos-agent/node-a"].watch(NetworkAttachment, None, timeout_seconds=1):
        pass


async def test_a_denied_multiplexed_watch_ends_alone(server: APIServer, clients: dict[str, Client]) -> None:
    await clients["root"].create(subnet())
    url = server.url.replace("http", "ws", 1) + f"{PREFIX}/watchmux"
    records: list[tuple[int, bytes]] = []
    async with (
        aiohttp.ClientSession(headers={"User-Agent": "kos-agent/node-a"}) as session,
        session.ws_connect(url) as ws,
    ):
        await ws.send_str(json.dumps({"op": "watch", "id": 1, "resource": "iplocks", "namespace": NS}))
        await ws.send_str(json.dumps({"op": "watch", "id": 2, "resource": "subnets"}))
        while (1, b"") not in records or not any(i == 2 and b'"ADDED"' in d for i, d in records):
            records.extend(_records((await ws.receive(timeout=5)).data))
    denied = [json.loads(d) for i, d in records if i == 1 and d]
    assert len(denied) == 1 and denied[0]["type"] == "ERROR"
    st = denied[0]["object"]
    assert (st["code"], st["reason"]) == (403, "Forbidden")
    assert 'User "system:node:node-a" cannot watch resource "iplocks"' in st["message"]
    assert any(i == 2 and b'"ADDED"' in d for i, d in records)  # the other watch goes on, on the same connection


def _records(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        head, _, rest = data.partition(b"\n")
        wid, n = (int(x) for x in head.split())
        out.append((wid, rest[:n].strip()))
        data = rest[n:]
    return out
