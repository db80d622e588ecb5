"""kos.pki.kubeconfig.load_kubeconfig reads kubeconfigs as clientcmd does: inline data and files (relative to
the kubeconfig), token and tokenFile, a named context; a missing or malformed piece is a KubeConfigError naming
the file and the problem; secrets never show in a repr; kubeconfigs kos writes read back."""

from __future__ import annotations

import base64
import os
import ssl
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from kos.cli.main import main
from kos.pki import directory
from kos.pki.authority import Identity, issue_client, new_ca
from kos.pki.kubeconfig import KubeConfigError, kubeconfig, load_kubeconfig

SERVER = "https://127.0.0.1:6443"


@pytest.fixture(scope="module")
def ca() -> Identity:
    return new_ca("test-ca")


@pytest.fixture(scope="module")
def node(ca: Identity) -> Identity:
    return issue_client(ca, "system:node:node-3", ["system:nodes"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def config(cluster: dict[str, Any], user: dict[str, Any], *, namespace: str = "", current: str = "c") -> dict[str, Any]:
    ctx: dict[str, Any] = {"cluster": "k", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "k", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": ctx}],
    }  # fmt: skip


def test_a_kubeconfig_kos_writes_reads_back(tmp_path: Path, ca: Identity, node: Identity) -> None:
    path = tmp_path / "kc"
    path.write_bytes(kubeconfig(SERVER, ca.cert_pem(), node, "system:node:node-3"))
    kc = load_kubeconfig(path)
    assert (kc.server, kc.cluster, kc.user, kc.namespace) == (SERVER, "kos", "system:node:node-3", "default")
    assert kc.ca_pem == ca.cert_pem() and kc.client_cert_pem == node.cert_pem() and kc.client_key_pem == node.key_pem()
    assert kc.client_certificate_user() == ("system:node:node-3", ["system:nodes"])
    assert kc.headers() == {}
    ctx = kc.ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.get_ca_certs()[0]["subject"] == ((("commonName", "test-ca"),),)


def test_inline_keys_go_through_a_private_file_removed_at_once(
    tmp_path: Path, ca: Identity, node: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kc"
    path.write_bytes(kubeconfig(SERVER, ca.cert_pem(), node, "n"))
    made: list[tuple[str, int]] = []
    real = tempfile.mkstemp

    def spy(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real(*args, **kwargs)
        made.append((name, stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    assert load_kubeconfig(path).ssl_context() is not None
    assert len(made) == 1
    name, mode = made[0]
    assert mode == 0o600
    assert not os.path.exists(name)


def test_files_are_relative_to_the_kubeconfig(
    tmp_path: Path, ca: Identity, node: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(ca.cert_pem())
    (tmp_path / "pki" / "node.crt").write_bytes(node.cert_pem())
    (tmp_path / "pki" / "node.key").write_bytes(node.key_pem())
    (tmp_path / "conf").mkdir()
    user = {"client-certificate": "../pki/node.crt", "client-key": "../pki/node.key"}
    path = write(tmp_path / "conf" / "kc", config({"server": SERVER, "certificate-authority": "../pki/ca.crt"}, user))
    monkeypatch.chdir("/")  # not the kubeconfig's directory
    kc = load_kubeconfig(path)
    assert kc.client_cert_file == tmp_path / "conf" / "../pki/node.crt"
    assert kc.ca_pem == ca.cert_pem()
    assert kc.client_certificate_user() == ("system:node:node-3", ["system:nodes"])
    assert kc.ssl_context() is not None


def test_token_and_token_file(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("  file-token\n")
    path = write(tmp_path / "kc", config({"server": "http://127.0.0.1:8080"}, {"tokenFile": "tok"}))
    kc = load_kubeconfig(path)
    assert kc.headers() == {"Authorization": "Bearer file-token"}
    assert kc.ssl_context() is None  # plain http
    assert "file-token" not in repr(kc)
    both = write(tmp_path / "kc2", config({"server": SERVER}, {"token": "inline", "tokenFile": "tok"}))
    assert load_kubeconfig(both).headers() == {"Authorization": "Bearer inline"}  # clientcmd: the inline token wins


def test_secrets_stay_out_of_repr(tmp_path: Path, ca: Identity, node: Identity) -> None:
    path = tmp_path / "kc"
    path.write_bytes(kubeconfig(SERVER, ca.cert_pem(), node, "n"))
    text = repr(load_kubeconfig(path))
    assert "PRIVATE KEY" not in text and b64(node.key_pem())[:40] not in text


def test_a_named_context_and_its_namespace(tmp_path: Path) -> None:
    doc = config({"server": "http://a:1"}, {"token": "t"}, namespace="ns1")
    doc["clusters"].append({"name": "k2", "cluster": {"server": "http://b:2"}})
    doc["contexts"].append({"name": "other", "context": {"cluster": "k2", "user": "u"}})
    path = write(tmp_path / "kc", doc)
    assert (load_kubeconfig(path).server, load_kubeconfig(path).namespace) == ("http://a:1", "ns1")
    other = load_kubeconfig(path, context="other")
    assert (other.context, other.server, other.namespace, other.token) == ("other", "http://b:2", "default", "t")


def test_insecure_skip_tls_verify(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", config({"server": SERVER, "insecure-skip-tls-verify": True}, {}))
    ctx = load_kubeconfig(path).ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_kos_certs_issue_round_trips(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert main(["certs", "init", "--pki", str(pki), "--hosts", "127.0.0.1", "--server", SERVER]) == 0
    out = tmp_path / "alice.kubeconfig"
    assert main(["certs", "issue", "--pki", str(pki), "--user", "alice", "--group", "kos:users",
                 "--kubeconfig-out", str(out), "--server", SERVER]) == 0  # fmt: skip
    kc = load_kubeconfig(out)
    assert kc.server == SERVER and kc.ca_pem == (pki / "ca.crt").read_bytes()
    assert kc.client_certificate_user() == ("alice", ["kos:users"])
    assert kc.ssl_context() is not None
    admin = load_kubeconfig(pki / "admin.kubeconfig")
    assert admin.client_certificate_user() == (directory.ADMIN_USER, [directory.ADMIN_GROUP])


def bad(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], **kw: Any) -> str:
    path = write(tmp_path / "kc", config(cluster, user, **kw))
    with pytest.raises(KubeConfigError) as e:
        load_kubeconfig(path).ssl_context()
    assert str(path) in str(e.value)
    return str(e.value)


def test_missing_or_malformed_pieces_are_named(tmp_path: Path, ca: Identity, node: Identity) -> None:
    cert, key = b64(node.cert_pem()), b64(node.key_pem())
    assert "no http:// or https:// server" in bad(tmp_path, {}, {})
    assert "no http:// or https:// server ('127.0.0.1:1')" in bad(tmp_path, {"server": "127.0.0.1:1"}, {})
    assert "certificate-authority-data of cluster 'k' is not base64" in bad(
        tmp_path, {"server": SERVER, "certificate-authority-data": "%%%"}, {}
    )
    assert "gives both certificate-authority and certificate-authority-data" in bad(
        tmp_path, {"server": SERVER, "certificate-authority-data": b64(ca.cert_pem()), "certificate-authority": "x"}, {}
    )
    assert "cannot read" in bad(tmp_path, {"server": SERVER, "certificate-authority": "missing.crt"}, {})
    assert "certificate authority and insecure-skip-tls-verify" in bad(
        tmp_path,
        {"server": SERVER, "certificate-authority-data": b64(ca.cert_pem()), "insecure-skip-tls-verify": True},
        {},
    )
    assert "certificate authority of cluster 'k' does not load" in bad(
        tmp_path, {"server": SERVER, "certificate-authority-data": b64(b"not a certificate")}, {}
    )
    assert "without its key" in bad(tmp_path, {"server": SERVER}, {"client-certificate-data": cert})
    assert "without its key" in bad(tmp_path, {"server": SERVER}, {"client-key-data": key})
    assert "client-certificate of user 'u': " in bad(
        tmp_path, {"server": SERVER}, {"client-certificate": "nope.crt", "client-key-data": key}
    )
    other_key = b64(issue_client(ca, "x").key_pem())
    assert "do not load" in bad(
        tmp_path, {"server": SERVER}, {"client-certificate-data": cert, "client-key-data": other_key}
    )
    assert "uses exec, which kos does not support" in bad(tmp_path, {"server": SERVER}, {"exec": {"command": "x"}})
    assert "uses username, password" in bad(tmp_path, {"server": SERVER}, {"username": "a", "password": "b"})
    assert "tokenFile of user 'u': cannot read" in bad(tmp_path, {"server": SERVER}, {"tokenFile": "none"})
    assert "characters a header cannot carry" in bad(tmp_path, {"server": SERVER}, {"token": "a\nb"})
    assert "server of cluster 'k' is not a string" in bad(tmp_path, {"server": 7}, {})
    assert "no current-context" in bad(tmp_path, {"server": SERVER}, {}, current="")


def test_missing_entries_and_files(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=r"cannot read the kubeconfig .*nope"):
        load_kubeconfig(tmp_path / "nope")
    (tmp_path / "junk").write_text("{{{")
    with pytest.raises(KubeConfigError, match="junk is not a YAML kubeconfig"):
        load_kubeconfig(tmp_path / "junk")
    (tmp_path / "list").write_text("- 1\n")
    with pytest.raises(KubeConfigError, match="list is not a kubeconfig"):
        load_kubeconfig(tmp_path / "list")
    path = write(tmp_path / "kc", config({"server": SERVER}, {}))
    with pytest.raises(KubeConfigError, match="no context named 'elsewhere' in contexts"):
        load_kubeconfig(path, context="elsewhere")
    doc = config({"server": SERVER}, {})
    doc["clusters"] = []
    with pytest.raises(KubeConfigError, match="no cluster named 'k' in clusters"):
        load_kubeconfig(write(tmp_path / "kc", doc))
    doc = config({"server": SERVER}, {})
    doc["users"] = [{"name": "u"}]
    with pytest.raises(KubeConfigError, match="user 'u' has no user mapping"):
        load_kubeconfig(write(tmp_path / "kc", doc))
