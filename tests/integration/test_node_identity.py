"""Review of issue 12: who counts as a node agent, over real TLS with client certificates.

A certificate for `system:node:` (the node prefix and no node name) in `system:nodes` names no node: Kubernetes'
Node authorizer and NodeRestriction refuse such a user ("unknown node"). kos' built-in policy granted it the
node role by the prefix alone while the node restriction, which asks `UserInfo.node_name()`, found no node and
checked nothing — so it could rewrite any node's attachment status, IPAM's fields included.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from kos.api.errors import Forbidden
from kos.api.meta import ObjectMeta
from kos.api.types import GROUP, VERSION, NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.authz.build import build_admission, build_authorizer
from kos.apiserver.auth.authz.policy import BuiltinPolicy
from kos.apiserver.auth.config import AuthSettings, build_gate
from kos.apiserver.auth.noderestriction import NodeRestriction
from kos.apiserver.auth.user import AUTHENTICATED, NODES_GROUP, SYSTEM_MASTERS, UserInfo
from kos.client.rest import Client
from kos.pki.authority import issue_client, issue_server, new_ca
from kos.testing.apiserver import running_apiserver

NS = "ns1"
NO_NODE = UserInfo("system:node:", groups=(NODES_GROUP, AUTHENTICATED))


def _status_write(user: UserInfo, verb: str = "patch") -> Attributes:
    return Attributes(user, verb, api_group=GROUP, api_version=VERSION, resource="networkattachments",
                      subresource="status", namespace=NS, name="b")  # fmt: skip


def test_the_policy_gives_no_node_role_to_a_node_user_without_a_node_name() -> None:
    policy = BuiltinPolicy()
    assert not policy.decide(_status_write(NO_NODE))
    assert not policy.decide(_status_write(NO_NODE, "update"))
    assert policy.decide(Attributes(NO_NODE, "get", resource_request=False, path="/version"))  # still authenticated
    assert policy.decide(_status_write(UserInfo("system:node:n", groups=(NODES_GROUP, AUTHENTICATED))))


def test_the_node_restriction_refuses_every_write_of_a_node_user_without_a_node_name() -> None:
    admit = NodeRestriction().for_write(_status_write(NO_NODE))
    assert admit is not None  # even if another authorizer (a SubjectAccessReview) allowed it
    old = NetworkAttachment(
        metadata=ObjectMeta(name="b", namespace=NS), spec=NetworkAttachmentSpec(node="", subnet="s")
    )
    with pytest.raises(Forbidden):
        admit(old, old)


@pytest.fixture
async def server_and_pki(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, ssl.SSLContext]]]:
    ca = new_ca("kos-ca")
    srv = issue_server(ca, "kos-apiserver", ["localhost"], [ipaddress.ip_address("127.0.0.1")])
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem())
    (tmp_path / "s.crt").write_bytes(srv.cert_pem())
    (tmp_path / "s.key").write_bytes(srv.key_pem())
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    sctx.verify_mode = ssl.CERT_OPTIONAL
    sctx.load_verify_locations(cafile=ca_file)
    clients = {}
    for who, user, groups in (("admin", "admin", [SYSTEM_MASTERS]), ("no-node", "system:node:", [NODES_GROUP])):
        ident = issue_client(ca, user, groups)
        (tmp_path / f"{who}.crt").write_bytes(ident.cert_pem())
        (tmp_path / f"{who}.key").write_bytes(ident.key_pem())
        c = ssl.create_default_context(cafile=ca_file)
        c.load_cert_chain(tmp_path / f"{who}.crt", tmp_path / f"{who}.key")
        clients[who] = c
    s = AuthSettings(client_ca_file=ca_file)
    gate = build_gate(s, authorizer=build_authorizer(s), admission=build_admission())
    try:
        async with running_apiserver(ssl=sctx, gate=gate, shutdown_timeout=1.0) as server:
            yield server.url, clients
    finally:
        await gate.aclose()


async def test_a_node_user_without_a_node_name_cannot_write_any_attachment_status(
    server_and_pki: tuple[str, dict[str, ssl.SSLContext]],
) -> None:
    url, ctxs = server_and_pki
    admin, intruder = Client(url, ssl=ctxs["admin"]), Client(url, ssl=ctxs["no-node"])
    try:
        await admin.create(
            Subnet(metadata=ObjectMeta(name="s1", namespace=NS), spec=SubnetSpec(vni=7, ipv4="10.7.0.0/24"))
        )
        b = await admin.create(NetworkAttachment(metadata=ObjectMeta(name="b", namespace=NS),
                                                 spec=NetworkAttachmentSpec(node="node-b", subnet="s1")))  # fmt: skip
        changed = msgspec.structs.replace(b, status=msgspec.structs.replace(b.status, host_ip="192.0.2.66"))
        with pytest.raises(Forbidden):
            await intruder.update_status(changed)
        with pytest.raises(Forbidden):
            await intruder.patch(
                NetworkAttachment, NS, "b", {"status": {"errors": {"ipam": ["x"]}}}, subresource="status"
            )
        got = await admin.get(NetworkAttachment, NS, "b")
        assert got.status.host_ip != "192.0.2.66" and not got.status.errors.ipam
    finally:
        await admin.close()
        await intruder.close()
