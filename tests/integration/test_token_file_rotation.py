"""Rotated ServiceAccount tokens (the kubelet rewrites a projected token file well before the token expires):
a kos Client made from a kubeconfig with `tokenFile`, and an apiserver whose `--authentication-kubeconfig`
has a `tokenFile` for its delegated TokenReview, both keep working after each file is rewritten with a new
token and the old one stops being valid — each re-reads its file once the token is a minute old on the
injected clock (kos.pki.bearer, client-go's cached file token source), not before; so does the delegated
SubjectAccessReview of `--authorization-kubeconfig`."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from kos.api.errors import Unauthorized
from kos.api.meta import ObjectMeta
from kos.api.types import GROUP, VERSION, NetworkAttachment, NetworkAttachmentSpec
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.authz.webhook import SubjectAccessReviewer
from kos.apiserver.auth.config import AuthSettings, build_gate
from kos.apiserver.auth.gate import Decision
from kos.apiserver.auth.user import AUTHENTICATED, UserInfo
from kos.cli.apiserver import webhook_endpoint
from kos.client.rest import Client
from kos.pki.authority import issue_server, new_ca
from kos.pki.bearer import MAX_AGE
from kos.testing.apiserver import running_apiserver
from kos.testing.clock import FakeClock
from kos.testing.kubeauth import FakeKubeAuth, RecordingAuthorizer
from kos.testing.kubeauthz import FakeSubjectAccessReview, SARRule


def token_kubeconfig(path: Path, server: str, ca: str, token_file: str) -> Path:
    cluster = {"server": server, **({"certificate-authority": ca} if ca else {})}
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": cluster}],
        "users": [{"name": "u", "user": {"tokenFile": token_file}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


LOCKS = Attributes(UserInfo("dave", groups=(AUTHENTICATED,)), "list", api_group=GROUP, api_version=VERSION,
                   resource="iplocks", namespace="ns1")  # fmt: skip


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


async def test_delegated_subject_access_review_survives_token_file_rotation(tmp_path: Path) -> None:
    token = tmp_path / "apiserver.token"
    token.write_text("apiserver-1")
    clock = FakeClock()
    rules = [SARRule(True, user="dave", resource="iplocks", namespace="ns1")]
    async with FakeSubjectAccessReview(rules, require="apiserver-1") as fake:
        authz = token_kubeconfig(tmp_path / "authz.kubeconfig", fake.url, "", "apiserver.token")
        endpoint = webhook_endpoint(authz, clock)
        assert endpoint is not None
        sar = SubjectAccessReviewer(endpoint, clock=clock, allowed_ttl=1.0, denied_ttl=1.0)
        try:
            assert (await sar.authorize(LOCKS))[0] is Decision.ALLOW
            token.write_text("apiserver-2")
            fake.require = "apiserver-2"
            await clock.advance(MAX_AGE / 2)  # past the answer's TTL, within the minute: the old token, refused
            assert (await sar.authorize(LOCKS))[0] is Decision.NO_OPINION
            await clock.advance(MAX_AGE / 2)
            assert (await sar.authorize(LOCKS))[0] is Decision.ALLOW
        finally:
            await sar.aclose()
