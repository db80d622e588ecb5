"""kos up's identities (kos.cli.clusterpki): the PKI, kubeconfigs and node tokens in the state directory; secrets
private; a second start keeps the CA and what it signed, and issues only what is missing or stale; each process
started with its own (kos.cli.cluster), or none with --insecure."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kos.cli import clusterpki
from kos.cli.cluster import Cluster, ClusterSettings
from kos.pki import directory
from kos.pki.authority import user_of
from kos.pki.tokenfile import read_token_file

SERVER = "https://127.0.0.1:8080"
NODES = [f"node-{i}" for i in range(5)]


def _files(state: Path) -> dict[str, bytes]:
    return {str(p.relative_to(state)): p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}


def _sans(path: Path) -> list[str]:
    ext = x509.load_pem_x509_certificate(path.read_bytes()).extensions
    sans = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted([*sans.get_values_for_type(x509.DNSName), *map(str, sans.get_values_for_type(x509.IPAddress))])


def test_a_fresh_state_directory_gets_the_pki_kubeconfigs_and_tokens_with_secrets_private(tmp_path: Path) -> None:
    ids = clusterpki.prepare(tmp_path, SERVER, ["127.0.0.1"], NODES)
    names = {p.name for p in ids.pki.iterdir()}
    for n in ("ca", "apiserver", "front-proxy-ca", "admin", "controller-manager", "controller-manager-serving",
              "simnodes-serving"):  # fmt: skip
        assert {f"{n}.crt", f"{n}.key"} <= names, n
        assert stat.S_IMODE((ids.pki / f"{n}.key").stat().st_mode) == 0o600
    for secret in (ids.admin_kubeconfig, ids.controller_manager_kubeconfig, ids.node_tokens, ids.simnodes_kubeconfig):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert stat.S_IMODE(ids.pki.stat().st_mode) == 0o700
    assert _sans(ids.pki / "apiserver.crt") == ["127.0.0.1", "localhost"]
    for path, user, groups in ((ids.admin_kubeconfig, "kos:admin", ["system:masters"]),
                               (ids.controller_manager_kubeconfig, "system:kos:controller-manager", [])):  # fmt: skip
        kc = yaml.safe_load(path.read_text())
        assert kc["clusters"][0]["cluster"]["server"] == SERVER
        assert base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]) == ids.ca_pem
        cert = x509.load_pem_x509_certificate(base64.b64decode(kc["users"][0]["user"]["client-certificate-data"]))
        assert user_of(cert) == (user, groups)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ids.ca_pem))
    records = read_token_file(ids.node_tokens)  # as the apiserver reads it (--token-auth-file)
    assert [(r.user, r.uid, r.groups) for r in records] == [
        (f"system:node:{n}", n, ("system:nodes",)) for n in [*NODES, "kos:simnodes"]
    ]
    assert len({r.token for r in records}) == len(records) and min(len(r.token) for r in records) >= 40
    # the simulated nodes' shared connection: a token (never a certificate, which would name every node's call)
    shared = yaml.safe_load(ids.simnodes_kubeconfig.read_text())
    assert shared["users"][0] == {"name": "system:node:kos:simnodes", "user": {"token": records[-1].token}}
    assert base64.b64decode(shared["clusters"][0]["cluster"]["certificate-authority-data"]) == ids.ca_pem


def test_a_second_start_keeps_the_ca_certificates_and_tokens(tmp_path: Path) -> None:
    clusterpki.prepare(tmp_path, SERVER, ["127.0.0.1"], NODES)
    before = _files(tmp_path)
    clusterpki.prepare(tmp_path, SERVER, ["127.0.0.1"], NODES)
    assert _files(tmp_path) == before


def test_a_new_listen_host_reissues_only_the_apiserver_certificate_and_fewer_nodes_drop_tokens(tmp_path: Path) -> None:
    clusterpki.prepare(tmp_path, SERVER, ["127.0.0.1"], NODES)
    before = _files(tmp_path)
    ids = clusterpki.prepare(tmp_path, "https://10.1.2.3:8080", ["10.1.2.3"], NODES[:2])
    after = _files(tmp_path)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"pki/apiserver.crt", "pki/apiserver.key", "kubeconfig", "controller-manager.kubeconfig",
                       "simnodes.kubeconfig", "node-tokens.csv"}  # fmt: skip
    assert _sans(ids.pki / "apiserver.crt") == ["10.1.2.3", "127.0.0.1", "localhost"]
    old = tmp_path / "old-tokens.csv"
    old.write_bytes(before["node-tokens.csv"])
    kept = {n: t for n, t in clusterpki.read_node_tokens(old).items() if n in [*NODES[:2], "kos:simnodes"]}
    assert clusterpki.read_node_tokens(ids.node_tokens) == kept and len(kept) == 3


def test_without_a_ca_the_whole_pki_is_made_again_and_a_bad_ca_is_an_error(tmp_path: Path) -> None:
    ids = clusterpki.prepare(tmp_path, SERVER, ["127.0.0.1"], NODES)
    admin = (ids.pki / "admin.crt").read_bytes()
    (ids.pki / "ca.crt").unlink()
    (ids.pki / "ca.key").unlink()
    ids2 = clusterpki.prepare(tmp_path, SERVER, ["127.0.0.1"], NODES)
    assert ids2.ca_pem != ids.ca_pem and (ids.pki / "admin.crt").read_bytes() != admin
    (ids.pki / "ca.key").write_text("garbage")  # never replaced silently: what it signed would be lost
    with pytest.raises(directory.PKIError, match="cannot read ca"):
        clusterpki.prepare(tmp_path, SERVER, ["127.0.0.1"], NODES)


def test_kos_up_runs_every_process_with_its_identity_and_insecure_with_none(tmp_path: Path) -> None:
    c = Cluster(ClusterSettings(state_dir=tmp_path / "s", nodes=2))
    api, cm, sim = (child.args for child in c.children)
    pki = tmp_path / "s" / "pki"
    assert c.server.startswith("https://") and c.nodes_url.startswith("https://")
    for flag, value in (("--tls-cert-file", pki / "apiserver.crt"), ("--client-ca-file", pki / "ca.crt"),
                        ("--token-auth-file", tmp_path / "s" / "node-tokens.csv")):  # fmt: skip
        assert api[api.index(flag) + 1] == str(value)
    assert cm[cm.index("--kubeconfig") + 1] == str(tmp_path / "s" / "controller-manager.kubeconfig")
    assert cm[cm.index("--tls-cert-file") + 1] == str(pki / "controller-manager-serving.crt")
    assert sim[sim.index("--node-tokens") + 1] == str(tmp_path / "s" / "node-tokens.csv")
    assert sim[sim.index("--kubeconfig") + 1] == str(tmp_path / "s" / "simnodes.kubeconfig")
    assert sim[sim.index("--tls-cert-file") + 1] == str(pki / "simnodes-serving.crt")
    assert all(child.ready_ssl is not None and child.ready_url.startswith("https://") for child in c.children)
    assert not any("--insecure" in args for args in (api, cm, sim))
    assert c.client_config().headers == {} and c.client_config().ssl is not None  # the admin's certificate

    plain = Cluster(ClusterSettings(state_dir=tmp_path / "p", nodes=2, insecure=True))
    assert plain.server.startswith("http://") and plain.identities is None
    assert all("--insecure" in child.args and child.ready_ssl is None for child in plain.children)
    assert not (tmp_path / "p" / "pki").exists()
