"""`kos apiserver` run as users run it, secure: HTTPS, client certificates and tokens, the built-in roles, the
node restriction, and a client-CA rotation that authentication follows without a restart."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kos.apiserver.auth.user import UserInfo
from kos.pki.authority import issue_client, new_ca
from kos.testing.kubeauthz import FakeSubjectAccessReview, SARRule
from kos.testing.tlsfiles import TestPKI

API = "/apis/network.example.com/v1alpha1"


class Server:
    def __init__(self, pki: TestPKI, tokens: Path, extra: list[str] | None = None) -> None:
        cmd = [sys.executable, "-m", "kos", "apiserver", "--listen", "127.0.0.1:0", "--log-level", "warning",
               "--tls-cert-file", str(pki.cert_file), "--tls-private-key-file", str(pki.key_file),
               "--client-ca-file", str(pki.client_ca_file), "--token-auth-file", str(tokens), *(extra or [])]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("kos apiserver ready at https://"), line
        self.url = line.split()[-1]
        self.pki = pki

    def call(
        self, method: str, path: str, *, ctx: ssl.SSLContext, token: str = "", body: Any = None,
        extra_headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        headers = {"Content-Type": "application/json", **(extra_headers or {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                data = r.read()
                return r.status, json.loads(data) if r.headers.get_content_type() == "application/json" else data
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=20)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    pki = TestPKI(tmp_path / "pki")
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('tok-a,system:node:node-a,uid-a,"system:nodes"\ntok-b,system:node:node-b,uid-b,"system:nodes"\n')
    s = Server(pki, tokens)
    yield s
    s.stop()


def subnet(name: str) -> dict[str, Any]:
    return {"apiVersion": "network.example.com/v1alpha1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"ipv4": "10.1.0.0/24", "vni": 7}}  # fmt: skip


def attachment(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "network.example.com/v1alpha1", "kind": "NetworkAttachment", "metadata": {"name": name},
            "spec": {"node": node, "subnet": "s1"}}  # fmt: skip


def test_roles_and_node_restriction_over_https(server: Server) -> None:
    pki = server.pki
    anonymous = pki.client_context()
    admin = pki.client_context(pki.client("kos:admin", ("system:masters",)))
    assert server.call("GET", "/healthz", ctx=anonymous)[0] == 200
    code, status = server.call("GET", f"{API}/subnets", ctx=anonymous)
    assert (code, status["reason"]) == (401, "Unauthorized")
    assert server.call("POST", f"{API}/namespaces/default/subnets", ctx=admin, body=subnet("s1"))[0] == 201
    code, na = server.call("POST", f"{API}/namespaces/default/networkattachments", ctx=admin,
                           body=attachment("a1", "node-b"))  # fmt: skip
    assert code == 201
    na["status"] = {"macAddress": "02:00:00:00:00:01"}
    status_path = f"{API}/namespaces/default/networkattachments/a1/status"
    code, refused = server.call("PUT", status_path, ctx=anonymous, token="tok-a", body=na)
    assert code == 403, refused
    assert 'User "system:node:node-a"' in refused["message"]
    code, _ = server.call("PUT", status_path, ctx=anonymous, token="tok-b", body=na)
    assert code == 200
    code, refused = server.call("DELETE", f"{API}/namespaces/default/networkattachments/a1", ctx=anonymous,
                                token="tok-b")  # fmt: skip
    assert code == 403 and "cannot delete" in refused["message"]
    assert server.call("GET", f"{API}/subnets", ctx=anonymous, token="wrong")[0] == 401


def test_a_rotated_client_ca_is_followed_by_authentication(server: Server) -> None:
    pki = server.pki
    other = new_ca("kos-next-ca")
    newcomer = pki.client_context(pki.client("kos:admin", ("system:masters",), ca=other))
    pki.trust(pki.ca, other)  # the bundle now holds both CAs
    deadline = time.monotonic() + 20  # the server looks at its files once a second
    while True:
        try:
            code, _ = server.call("GET", f"{API}/subnets", ctx=newcomer)
        except OSError:  # the TLS layer does not trust the new CA yet
            code = 0
        if code == 200:
            break
        assert code in (0, 401), code
        assert time.monotonic() < deadline, "a certificate of the new CA was never accepted"
        time.sleep(0.1)


async def test_delegated_token_review_and_subject_access_review_from_kubeconfigs(tmp_path: Path) -> None:
    """`--authentication-kubeconfig` and `--authorization-kubeconfig` point at a (fake) Kubernetes API: a token
    only it knows is reviewed there, and what the built-in roles do not allow is asked of it."""
    rules = [SARRule(allow=True, user="alice", verb="list", resource="subnets")]
    async with FakeSubjectAccessReview(rules, require="kos-sa-token") as fake:
        fake.tokens["alice-token"] = UserInfo("alice", "uid-alice")
        kubeconfig = tmp_path / "delegation.kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: k, cluster: {{server: '{fake.url}'}}}}]\n"
            "users: [{name: kos, user: {token: kos-sa-token}}]\n"
            "contexts: [{name: k, context: {cluster: k, user: kos}}]\ncurrent-context: k\n"
        )
        pki = TestPKI(tmp_path / "pki")
        tokens = tmp_path / "tokens.csv"
        tokens.write_text("")
        server = await asyncio.to_thread(
            Server, pki, tokens,
            ["--authentication-kubeconfig", str(kubeconfig), "--authorization-kubeconfig", str(kubeconfig)],
        )  # fmt: skip
        try:
            ctx = pki.client_context()
            for _ in range(3):
                code, _body = await asyncio.to_thread(server.call, "GET", f"{API}/subnets", ctx=ctx,
                                                      token="alice-token")  # fmt: skip
                assert code == 200
            code, refused = await asyncio.to_thread(server.call, "POST", f"{API}/namespaces/default/subnets",
                                                    ctx=ctx, token="alice-token", body=subnet("s1"))  # fmt: skip
            assert code == 403 and 'User "alice" cannot create' in refused["message"], refused
            assert fake.token_reviews == 1  # the answer was cached (10 s)
            assert [b["spec"]["resourceAttributes"]["verb"] for b in fake.bodies] == ["list", "create"]
            code, _body = await asyncio.to_thread(server.call, "GET", f"{API}/subnets", ctx=ctx, token="mallory")
            assert code == 401
        finally:
            await asyncio.to_thread(server.stop)


async def test_aggregated_mode_the_aggregator_probe_and_a_proxied_user(tmp_path: Path) -> None:
    """kos behind a kube-apiserver: only the front proxy's certificate (CN allowed) may name users; the
    aggregator's availability probe (GET the group-version as system:kube-aggregator in system:masters) is
    served even though the delegated authorizer denies everything it is asked; a proxied user with no kos role
    is judged by SubjectAccessReview."""
    rules = [SARRule(allow=True, user="alice", verb="list", resource="networkattachments"), SARRule(allow=False)]
    async with FakeSubjectAccessReview(rules) as fake:
        kubeconfig = tmp_path / "delegation.kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: k, cluster: {{server: '{fake.url}'}}}}]\n"
            "users: [{name: kos, user: {token: t}}]\n"
            "contexts: [{name: k, context: {cluster: k, user: kos}}]\ncurrent-context: k\n"
        )
        pki = TestPKI(tmp_path / "pki")
        front_proxy_ca = new_ca("front-proxy-ca")
        (tmp_path / "front-proxy-ca.crt").write_bytes(front_proxy_ca.cert_pem())
        tokens = tmp_path / "tokens.csv"
        tokens.write_text("")
        server = await asyncio.to_thread(
            Server, pki, tokens,
            ["--requestheader-client-ca-file", str(tmp_path / "front-proxy-ca.crt"),
             "--requestheader-allowed-names", "front-proxy-client", "--authorization-kubeconfig", str(kubeconfig)],
        )  # fmt: skip
        try:
            proxy = pki.client_context(issue_client(front_proxy_ca, "front-proxy-client"))
            impostor = pki.client_context(issue_client(front_proxy_ca, "someone-else"))
            aggregator = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}
            probes = [asyncio.to_thread(server.call, "GET", API, ctx=proxy, extra_headers=aggregator)
                      for _ in range(5)]  # fmt: skip
            assert [code for code, _ in await asyncio.gather(*probes)] == [200] * 5
            code, _ = await asyncio.to_thread(server.call, "GET", API, ctx=impostor, extra_headers=aggregator)
            assert code == 401  # a front-proxy certificate whose CN is not allowed
            forged = await asyncio.to_thread(server.call, "GET", API, ctx=pki.client_context(),
                                             extra_headers=aggregator)  # fmt: skip
            assert forged[0] == 401  # the headers without the proxy's certificate name nobody
            alice = {"X-Remote-User": "alice", "X-Remote-Group": "tenant-a"}
            code, _ = await asyncio.to_thread(server.call, "GET", f"{API}/networkattachments", ctx=proxy,
                                              extra_headers=alice)  # fmt: skip
            assert code == 200
            code, refused = await asyncio.to_thread(server.call, "GET", f"{API}/iplocks", ctx=proxy,
                                                    extra_headers=alice)  # fmt: skip
            assert code == 403 and 'User "alice" cannot list resource "iplocks"' in refused["message"]
            reviewed = [b["spec"]["user"] for b in fake.bodies]
            assert "system:kube-aggregator" not in reviewed and reviewed.count("alice") == 2
        finally:
            await asyncio.to_thread(server.stop)
