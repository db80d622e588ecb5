"""Rotated ServiceAccount tokens (the kubelet rewrites a projected token file well before the token expires):
a kos Client made from a kubeconfig with `tokenFile`, and an apiserver whose `--authentication-kubeconfig`
has a `tokenFile` for its delegated TokenReview, both keep working after each file is rewritten with a new
token and the old one stops being valid — each re-reads its file once the token is a minute old on the
injected clock (kos.pki.bearer, client-go's cached file token source), not before."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from kos.api.errors import Unauthorized
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.apiserver.auth.config import AuthSettings, build_gate
from kos.apiserver.auth.user import AUTHENTICATED, UserInfo
from kos.cli.apiserver import webhook_endpoint
from kos.client.rest import Client
from kos.pki.authority import issue_server, new_ca
from kos.pki.bearer import MAX_AGE
from kos.testing.apiserver import running_apiserver
from kos.testing.clock import FakeClock
from kos.testing.kubeauth import FakeKubeAuth, RecordingAuthorizer


def token_kubeconfig(path: Path, server: str, ca: str, token_file: str) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "u", "user": {"tokenFile": token_file}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


def na(name: str) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace="ns"),
                             spec=NetworkAttachmentSpec(node="n0", subnet="s"))  # fmt: skip


async def test_client_and_delegated_review_survive_token_file_rotation(tmp_path: Path) -> None:
    ca = new_ca("kos-test-ca")
    server = issue_server(ca, "kos-apiserver", ["localhost"], [ipaddress.ip_address("127.0.0.1")])
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    (tmp_path / "server.crt").write_bytes(server.cert_pem())
    (tmp_path / "server.key").write_bytes(server.key_pem())
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    agent = UserInfo("system:serviceaccount:kos:agent", "uid-1", ("system:serviceaccounts",))
    sa_token, client_token = tmp_path / "apiserver.token", tmp_path / "client.token"
    sa_token.write_text("apiserver-1\n")
    client_token.write_text("client-1\n")
    clock = FakeClock()
    seen = RecordingAuthorizer()

    async with FakeKubeAuth(ssl=serving, require="apiserver-1") as kube:
        kube.tokens["client-1"] = agent
        authn = token_kubeconfig(tmp_path / "authn.kubeconfig", kube.url, "ca.crt", "apiserver.token")
        gate = build_gate(AuthSettings(), clock, authorizer=seen, token_review=webhook_endpoint(authn, clock))
        try:
            async with running_apiserver(ssl=serving, gate=gate, shutdown_timeout=1.0) as api:
                kc = token_kubeconfig(tmp_path / "client.kubeconfig", api.url, "ca.crt", "client.token")
                async with Client.from_kubeconfig(kc, clock=clock) as c:
                    await c.create(na("a"))
                    assert seen.users[-1] == UserInfo(agent.name, agent.uid, (*agent.groups, AUTHENTICATED))
                    assert kube.requests[-1][1]["spec"] == {"token": "client-1"}

                    # both files rotated; the old tokens stop working at once
                    sa_token.write_text("apiserver-2\n")
                    client_token.write_text("client-2\n")
                    kube.require = "apiserver-2"
                    kube.tokens = {"client-2": agent}
                    await clock.advance(MAX_AGE / 2)  # past the review cache's TTL, within the minute
                    with pytest.raises(Unauthorized):  # neither file re-read yet: old tokens both
                        await c.get(NetworkAttachment, "ns", "a")
                    reviews = kube.token_reviews

                    await clock.advance(MAX_AGE / 2)
                    assert (await c.get(NetworkAttachment, "ns", "a")).metadata.name == "a"
                    assert kube.token_reviews == reviews + 1
                    assert kube.requests[-1][1]["spec"] == {"token": "client-2"}  # sent by the apiserver-2 token
                    assert seen.users[-1].name == agent.name

                    # a vanished file: the last good token is kept
                    client_token.unlink()
                    sa_token.unlink()
                    await clock.advance(MAX_AGE)
                    await c.create(na("b"))
                    assert kube.requests[-1][1]["spec"] == {"token": "client-2"}
        finally:
            await gate.aclose()
