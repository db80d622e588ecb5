"""Authorization and the node restriction over real TLS connections with client certificates (issue 12, Show).

One PKI per module (kos.pki): a CA that signs the server's certificate and one client certificate per identity
(CN = user, O = groups): an admin in `system:masters`, bob in `kos:users`, the agents of node-a and node-b
(`system:node:<n>` in `system:nodes`) and the controller manager. The server's gate is `build_gate` (x509
against that CA) with `build_authorizer` and `build_admission`, as `kos apiserver` assembles it. The real
controller manager (its client given the certificate) and a real connection agent then work through it, over
plain and multiplexed watches, with nothing denied.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.api.errors import Forbidden
from kos.api.meta import ObjectMeta
from kos.api.types import (
    GROUP,
    LEADER_ELECTION_NAMESPACE,
    IPLock,
    IPLockSpec,
    Lease,
    NetworkAttachment,
    NetworkAttachmentSpec,
    Subnet,
    SubnetSpec,
)
from kos.apiserver.auth.authz.build import build_admission, build_authorizer
from kos.apiserver.auth.config import AuthSettings, build_gate
from kos.apiserver.auth.user import CONTROLLER_MANAGER, NODES_GROUP, SYSTEM_MASTERS
from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.controllers import manager
from kos.controllers.leaderelection import LeaderElectionConfig
from kos.fabric.sim import SimFabric, SimNetwork
from kos.pki.authority import Identity, issue_client, issue_server, new_ca
from kos.testing.apiserver import running_apiserver
from kos.testing.controllers import start_cm
from kos.testing.kubeauth import DenialRecorder
from kos.testing.wait import eventually

NS = "ns1"
IDENTITIES = {
    "admin": ("admin", [SYSTEM_MASTERS]),
    "bob": ("bob", ["kos:users"]),
    "node-a": ("system:node:node-a", [NODES_GROUP]),
    "node-b": ("system:node:node-b", [NODES_GROUP]),
    "cm": (CONTROLLER_MANAGER, []),
}


@dataclasses.dataclass
class PKI:
    dir: Path
    ca: Identity
    server: Identity
    ids: dict[str, Identity]

    def write(self, name: str, ident: Identity) -> tuple[Path, Path]:
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        crt.write_bytes(ident.cert_pem())
        key.write_bytes(ident.key_pem())
        return crt, key

    def client_ctx(self, who: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca.cert_pem().decode())
        ctx.load_cert_chain(*self.write(who, self.ids[who]))
        return ctx

    def server_ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*self.write("server", self.server))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=self.ca.cert_pem().decode())
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    ca = new_ca("kos-ca")
    server = issue_server(ca, "kos-apiserver", ["localhost"], [ipaddress.ip_address("127.0.0.1")])
    ids = {k: issue_client(ca, user, groups) for k, (user, groups) in IDENTITIES.items()}
    return PKI(tmp_path_factory.mktemp("pki"), ca, server, ids)


@dataclasses.dataclass
class Secure:
    server: APIServer
    pki: PKI
    denials: DenialRecorder
    clients: dict[str, Client]

    def __getitem__(self, who: str) -> Client:
        c = self.clients.get(who)
        if c is None:
            c = self.clients[who] = Client(self.server.url, ssl=self.pki.client_ctx(who))
        return c


@pytest.fixture
async def secure(pki: PKI) -> AsyncIterator[Secure]:
    s = AuthSettings(client_ca_file=pki.write("ca", pki.ca)[0])
    denials = DenialRecorder(build_authorizer(s))
    gate = build_gate(s, authorizer=denials, admission=build_admission())
    try:
        async with running_apiserver(ssl=pki.server_ctx(), gate=gate, shutdown_timeout=1.0) as server:
            sec = Secure(server, pki, denials, {})
            try:
                yield sec
            finally:
                for c in sec.clients.values():
                    await c.close()
    finally:
        await gate.aclose()


def subnet(name: str = "s1", vni: int = 7) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4="10.7.0.0/24"))


def na(name: str, node: str) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS),
                             spec=NetworkAttachmentSpec(node=node, subnet="s1"))  # fmt: skip


def with_status(obj: NetworkAttachment, **changes: Any) -> NetworkAttachment:
    return msgspec.structs.replace(obj, status=msgspec.structs.replace(obj.status, **changes))


async def forbidden(call: Awaitable[Any]) -> Forbidden:
    with pytest.raises(Forbidden) as e:
        await call
    return e.value


async def test_the_agent_of_node_a_cannot_write_node_bs_attachment(secure: Secure) -> None:
    await secure["admin"].create(subnet())
    b = await secure["admin"].create(na("b", "node-b"))
    e = await forbidden(secure["node-a"].update_status(with_status(b, mac_address="m", host_ip="192.0.2.1")))
    st = e.to_status()
    assert (st.code, st.reason) == (403, "Forbidden")
    assert st.details is not None and (st.details.name, st.details.group, st.details.kind) == (
        "b", GROUP, "networkattachments")  # fmt: skip
    assert 'User "system:node:node-a" cannot update resource "networkattachments/status"' in e.message
    assert f'in the namespace "{NS}"' in e.message and 'the attachment is on node "node-b"' in e.message
    await secure["node-b"].update_status(with_status(b, mac_address="m", host_ip="192.0.2.2"))  # its own node's


async def test_an_agent_cannot_change_an_ipam_field(secure: Secure) -> None:
    await secure["admin"].create(subnet())
    a = await secure["admin"].create(na("a", "node-a"))
    e = await forbidden(secure["node-a"].update_status(with_status(a, mac_address="m", address_vni=9)))
    assert e.message.endswith("not status.addressVNI")
    e = await forbidden(secure["node-a"].patch(NetworkAttachment, NS, "a", {"status": {"ipv4": "10.7.0.5"}},
                                               subresource="status"))  # fmt: skip
    assert e.message.endswith("not status.ipv4")


async def test_an_agent_cannot_delete_an_attachment_nor_create_a_subnet(secure: Secure) -> None:
    await secure["admin"].create(subnet())
    await secure["admin"].create(na("a", "node-a"))
    e = await forbidden(secure["node-a"].delete(NetworkAttachment, NS, "a"))
    assert 'User "system:node:node-a" cannot delete resource "networkattachments"' in e.message
    e = await forbidden(secure["node-a"].create(subnet("s2", 8)))
    assert 'cannot create resource "subnets"' in e.message
    await forbidden(secure["node-a"].create(IPLock(metadata=ObjectMeta(name="l", namespace=NS), spec=IPLockSpec())))
    assert [n.metadata.name for n in (await secure["node-a"].list(NetworkAttachment, NS))[0]] == ["a"]


async def test_the_controller_manager_cannot_create_a_subnet(secure: Secure) -> None:
    e = await forbidden(secure["cm"].create(subnet()))
    assert f'User "{CONTROLLER_MANAGER}" cannot create resource "subnets"' in e.message
    await secure["cm"].create(IPLock(metadata=ObjectMeta(name="l", namespace=NS), spec=IPLockSpec()))


async def test_an_admin_can_do_everything(secure: Secure) -> None:
    admin = secure["admin"]
    await admin.create(subnet())
    a = await admin.create(na("a", "node-a"))
    await admin.update_status(with_status(a, mac_address="m", address_contention=True))
    await admin.patch(Subnet, NS, "s1", {"status": {"validated": True}}, subresource="status")
    await admin.create(IPLock(metadata=ObjectMeta(name="l", namespace=NS), spec=IPLockSpec()))
    assert len((await admin.list(IPLock, None))[0]) == 1
    await admin.delete(IPLock, NS, "l")
    await admin.delete(NetworkAttachment, NS, "a")
    await admin.delete(Subnet, NS, "s1")
    assert secure.denials.denied == []


async def test_a_user_creates_subnets_and_attachments_but_writes_no_status(secure: Secure) -> None:
    bob = secure["bob"]
    await bob.create(subnet())
    a = await bob.create(na("a", "node-a"))
    e = await forbidden(bob.update_status(with_status(a, mac_address="m")))
    assert 'User "bob" cannot update resource "networkattachments/status"' in e.message
    await forbidden(bob.patch(Subnet, NS, "s1", {"status": {"validated": True}}, subresource="status"))
    await bob.list(IPLock, NS)
    await forbidden(bob.create(IPLock(metadata=ObjectMeta(name="l", namespace=NS), spec=IPLockSpec())))
    await bob.delete(NetworkAttachment, NS, "a")


async def test_a_denied_multiplexed_watch_leaves_the_connection_to_the_others(secure: Secure) -> None:
    await secure["admin"].create(subnet())
    mux = Client(secure.server.url, ssl=secure.pki.client_ctx("node-a"), watch_mux=True)
    try:
        with pytest.raises(Forbidden, match='User "system:node:node-a" cannot watch resource "iplocks"'):
            async for _ in mux.watch(IPLock, NS):
                pass
        seen = [e.object.metadata.name async for e in mux.watch(Subnet, None, send_initial_events=True,
                                                                 timeout_seconds=1) if e.type == "ADDED"]  # fmt: skip
        assert seen == ["s1"]
        assert secure.server.watchmux is not None and len(secure.server.watchmux.connections) == 1
    finally:
        await mux.close()


async def test_the_controller_manager_and_an_agent_work_with_nothing_denied(
    secure: Secure, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = secure["admin"]
    # the controller manager's own client, given its certificate (its flags for that come with kubeconfigs)
    monkeypatch.setattr(manager, "Client", functools.partial(Client, ssl=secure.pki.client_ctx("cm")))
    # with leader election, as `kos controller-manager` runs by default: its Lease in kube-system is allowed
    cm = await start_cm(secure.server, leader_election=LeaderElectionConfig(identity="cm-under-test"))
    agent_client = Client(secure.server.url, ssl=secure.pki.client_ctx("node-a"), user_agent="kos-agent/node-a")
    fabric = SimFabric(SimNetwork(), "node-a", "192.0.2.1")
    agent = ConnectionAgent(agent_client, fabric, AgentSettings("node-a", "192.0.2.1", frozenset(), 2),
                            AgentMetricFamilies(CollectorRegistry()))  # fmt: skip
    await agent.start()
    try:
        await admin.create(subnet())
        for name in ("a", "b"):
            await admin.create(na(name, "node-a"))
        await admin.create(na("c", "node-b"))
        await eventually(lambda: _ready(admin, ("a", "b")), timeout=20)
        lease = await admin.get(Lease, LEADER_ELECTION_NAMESPACE, "kos-controller-manager")
        assert lease.spec.holder_identity == "cm-under-test"
        assert (await admin.get(Subnet, NS, "s1")).status.validated
        assert (await admin.get(NetworkAttachment, NS, "c")).status.ipv4
        await admin.delete(NetworkAttachment, NS, "a")
        await eventually(lambda: _count(admin.list(IPLock, NS), 2), timeout=20)
        await eventually(lambda: _count(fabric.list_local_ifcs(), 1), timeout=20)
        await admin.delete(Subnet, NS, "s1")
        await eventually(lambda: _cleared(admin, "b"), timeout=20)
    finally:
        await agent.stop()
        await agent_client.close()
        await cm.stop()
    assert secure.denials.denied == []
    assert sum(s.value for m in secure.server.metrics.requests.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels.get("code") in ("401", "403")) == 0  # fmt: skip


async def _ready(client: Client, names: tuple[str, ...]) -> bool:
    for n in names:
        st = (await client.get(NetworkAttachment, NS, n)).status
        if not (st.ipv4 and st.ifc_name and st.host_ip and st.mac_address):
            return False
    return True


async def _count(listing: Awaitable[Any], n: int) -> bool:
    got = await listing
    return len(got[0] if isinstance(got, tuple) else got) == n


async def _cleared(client: Client, name: str) -> bool:
    st = (await client.get(NetworkAttachment, NS, name)).status
    return not (st.ipv4 or st.host_ip or st.ifc_name or st.mac_address)
