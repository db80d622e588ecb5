"""`kos up --monitoring`'s Prometheus as a child (kos.cli.monitoring, kos.cli.cluster): its identities from the
cluster CA (a client in system:monitoring, a serving certificate for 127.0.0.1), its HTTPS web config and
command line; plain with --insecure; none, and no child, when the binary is missing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kos.cli import clusterpki, monitoring
from kos.cli.cluster import Cluster, ClusterSettings
from kos.pki import directory
from kos.pki.authority import user_of


def test_a_secure_prometheus_gets_a_monitoring_client_and_an_https_listener(tmp_path: Path) -> None:
    clusterpki.prepare(tmp_path, "https://127.0.0.1:8080", ["127.0.0.1"], ["node-0"])
    ca = directory.load(tmp_path / "pki", directory.CA)
    files = monitoring.prepare(tmp_path, secure=True)
    assert files.tls is not None and files.web_config is not None
    client = x509.load_pem_x509_certificate(files.tls.cert.read_bytes())
    client.verify_directly_issued_by(ca.cert)
    assert user_of(client) == (monitoring.USER, ["system:monitoring"])
    assert stat.S_IMODE(files.tls.key.stat().st_mode) == 0o600
    web = yaml.safe_load(files.web_config.read_text())["tls_server_config"]
    serving = x509.load_pem_x509_certificate(Path(web["cert_file"]).read_bytes())
    serving.verify_directly_issued_by(ca.cert)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    args = monitoring.args(files, "127.0.0.1:9999")
    assert f"--web.config.file={files.web_config.resolve()}" in args
    assert "--web.listen-address=127.0.0.1:9999" in args
    assert f"--config.file={files.config.resolve()}" in args


def test_an_insecure_prometheus_is_plain(tmp_path: Path) -> None:
    files = monitoring.prepare(tmp_path, secure=False)
    assert files.tls is None and files.web_config is None
    assert not any(a.startswith("--web.config.file") for a in monitoring.args(files, "127.0.0.1:1"))


def test_the_cluster_runs_prometheus_last_only_when_it_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitoring, "binary", lambda: "/usr/bin/prometheus-x")
    c = Cluster(ClusterSettings(state_dir=tmp_path / "a", nodes=1, monitoring=True))
    last = c.children[-1]
    assert (last.name, last.role, last.program) == ("prometheus", "prometheus", ("/usr/bin/prometheus-x",))
    assert c.prometheus == last.url and last.url is not None and last.url.startswith("https://127.0.0.1:")
    assert last.ready_url == f"{last.url}/-/ready" and last.metrics_url == f"{last.url}/metrics"
    monkeypatch.setattr(monitoring, "binary", lambda: None)
    c = Cluster(ClusterSettings(state_dir=tmp_path / "b", nodes=1, monitoring=True))
    assert c.prometheus is None and all(ch.role != "prometheus" for ch in c.children)
    c = Cluster(ClusterSettings(state_dir=tmp_path / "c", nodes=1))
    assert c.prometheus is None and all(ch.role != "prometheus" for ch in c.children)
