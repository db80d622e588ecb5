"""`kos certs init|issue` through the settings pipeline: the files are written, bad values and existing files
are one line and exit status 2, and an issued kubeconfig carries the user and groups asked for."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kos.cli.main import main
from kos.pki.authority import user_of

SERVER = "https://127.0.0.1:6443"


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_init_writes_the_pki_and_the_admin_kubeconfig(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert main(["certs", "init", "--pki", str(pki), "--hosts", "kos.ns.svc,127.0.0.1", "--server", SERVER]) == 0
    names = ["admin", "apiserver", "ca", "front-proxy-ca"]
    assert sorted(p.name for p in pki.iterdir()) == sorted(
        [f"{n}.crt" for n in names] + [f"{n}.key" for n in names] + ["admin.kubeconfig"]
    )
    assert stat.S_IMODE((pki / "admin.kubeconfig").stat().st_mode) == 0o600
    cfg = yaml.safe_load((pki / "admin.kubeconfig").read_text())
    assert cfg["clusters"][0]["cluster"]["server"] == SERVER
    cert = x509.load_pem_x509_certificate(base64.b64decode(cfg["users"][0]["user"]["client-certificate-data"]))
    assert user_of(cert) == ("kos:admin", ["system:masters"])


def _usages(path: Path) -> list[x509.ObjectIdentifier]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_init_peer_makes_the_serving_certificate_a_client_one_too(tmp_path: Path) -> None:
    """etcd members dial their peers with their serving certificate and etcd checks it for client use."""
    eku = x509.oid.ExtendedKeyUsageOID
    assert main(["certs", "init", "--pki", str(tmp_path / "plain"), "--hosts", "h.example"]) == 0
    assert _usages(tmp_path / "plain" / "apiserver.crt") == [eku.SERVER_AUTH]
    assert main(["certs", "init", "--pki", str(tmp_path / "peer"), "--hosts", "h.example", "--peer"]) == 0
    assert _usages(tmp_path / "peer" / "apiserver.crt") == [eku.SERVER_AUTH, eku.CLIENT_AUTH]


def test_init_without_server_writes_no_kubeconfig(tmp_path: Path) -> None:
    assert main(["certs", "init", "--pki", str(tmp_path), "--hosts", "h.example"]) == 0
    assert not (tmp_path / "admin.kubeconfig").exists()


def test_a_forced_init_without_server_removes_the_kubeconfig_of_the_replaced_ca(tmp_path: Path) -> None:
    assert main(["certs", "init", "--pki", str(tmp_path), "--hosts", "h.example", "--server", SERVER]) == 0
    assert (tmp_path / "admin.kubeconfig").exists()
    assert main(["certs", "init", "--pki", str(tmp_path), "--hosts", "h.example", "--force"]) == 0
    assert not (tmp_path / "admin.kubeconfig").exists()


def test_init_refuses_an_existing_pki(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "init", "--pki", str(tmp_path), "--hosts", "h.example"]) == 0
    before = (tmp_path / "ca.crt").read_bytes()
    capsys.readouterr()
    assert main(["certs", "init", "--pki", str(tmp_path), "--hosts", "h.example"]) == 2
    err = _one_line(capsys)
    assert err.startswith("kos certs init: --pki / KOS_PKI: ") and "use --force" in err
    assert (tmp_path / "ca.crt").read_bytes() == before
    assert main(["certs", "init", "--pki", str(tmp_path), "--hosts", "h.example", "--force"]) == 0
    assert (tmp_path / "ca.crt").read_bytes() != before


def test_bad_hosts_from_flag_or_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["certs", "init", "--pki", str(tmp_path), "--hosts", "ok.example,bad_name"]) == 2
    assert (
        _one_line(capsys) == "kos certs init: --hosts / KOS_HOSTS: 'bad_name' is neither an IP address nor a DNS name"
    )
    monkeypatch.setenv("KOS_HOSTS", ",")
    assert main(["certs", "init", "--pki", str(tmp_path)]) == 2
    assert _one_line(capsys) == "kos certs init: --hosts / KOS_HOSTS: give at least one host name or IP address"
    assert not any(tmp_path.iterdir())


def test_issue_mints_a_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = tmp_path / "pki"
    assert main(["certs", "init", "--pki", str(pki), "--hosts", "localhost"]) == 0
    out = tmp_path / "bob.kubeconfig"
    args = ["certs", "issue", "--pki", str(pki), "--user", "bob", "--group", "kos:users", "--group", "devs"]
    assert main([*args, "--kubeconfig-out", str(out), "--server", SERVER]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    cfg = yaml.safe_load(out.read_text())
    assert cfg["current-context"] == cfg["contexts"][0]["name"]
    assert (
        cfg["clusters"][0]["cluster"]["certificate-authority-data"]
        == base64.b64encode((pki / "ca.crt").read_bytes()).decode()
    )
    cert = x509.load_pem_x509_certificate(base64.b64decode(cfg["users"][0]["user"]["client-certificate-data"]))
    assert user_of(cert) == ("bob", ["kos:users", "devs"])
    monkeypatch.setenv("KOS_GROUP", "system:nodes")  # the variable form of a repeated flag: comma-separated
    node = tmp_path / "node.kubeconfig"
    assert main(["certs", "issue", "--pki", str(pki), "--user", "system:node:n1", "--kubeconfig-out", str(node),
                 "--server", SERVER]) == 0  # fmt: skip
    cert = x509.load_pem_x509_certificate(
        base64.b64decode(yaml.safe_load(node.read_text())["users"][0]["user"]["client-certificate-data"])
    )
    assert user_of(cert) == ("system:node:n1", ["system:nodes"])


def test_issue_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.kubeconfig"
    base = ["certs", "issue", "--user", "u", "--kubeconfig-out", str(out)]
    assert main([*base, "--pki", str(tmp_path / "none"), "--server", SERVER]) == 2
    assert _one_line(capsys).startswith("kos certs issue: --pki / KOS_PKI: ")
    assert main(["certs", "init", "--pki", str(tmp_path), "--hosts", "localhost"]) == 0
    capsys.readouterr()
    assert main([*base, "--pki", str(tmp_path), "--server", "ftp://x"]) == 2
    assert "is not an http:// or https:// URL" in _one_line(capsys)
    out.write_text("mine")
    assert main([*base, "--pki", str(tmp_path), "--server", SERVER]) == 2
    assert _one_line(capsys).startswith("kos certs issue: --kubeconfig-out / KOS_KUBECONFIG_OUT: ")
    assert out.read_text() == "mine"
    assert main([*base, "--pki", str(tmp_path), "--server", SERVER, "--force"]) == 0
    assert out.read_text() != "mine"
