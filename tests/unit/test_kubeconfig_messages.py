"""Review of issue 12: what a user sees for a broken kubeconfig is one line saying what is wrong.

PyYAML's message spans three lines ("while parsing a block mapping / did not find expected key / in ..."), and a
client certificate or key that does not load came out as OpenSSL's "[SSL] PEM lib (_ssl.c:NNNN)", naming
neither the certificate nor the key.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from kos.cli.main import main
from kos.pki.authority import issue_client, new_ca
from kos.pki.kubeconfig import KubeConfigError, load_kubeconfig


def _kubeconfig(path: Path, user: dict[str, str]) -> Path:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
           "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _message(path: Path) -> str:
    with pytest.raises(KubeConfigError) as e:
        load_kubeconfig(path).ssl_context()
    return str(e.value)


def test_a_yaml_error_is_one_line_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "kc").write_text(": : bad\n")
    msg = _message(tmp_path / "kc")
    assert "\n" not in msg
    assert msg.endswith("is not a YAML kubeconfig: did not find expected key (line 1, column 1)")


def test_a_client_certificate_or_key_that_does_not_load_is_named(tmp_path: Path) -> None:
    ca = new_ca("ca")
    me, other = issue_client(ca, "me"), issue_client(ca, "other")
    cert, key = _b64(me.cert_pem()), _b64(me.key_pem())
    not_pem = _b64(b"AAAA")
    cases = {
        "the client certificate is not a PEM certificate": {"client-certificate-data": not_pem, "client-key-data": key},
        "the client key is not a PEM private key": {"client-certificate-data": cert, "client-key-data": not_pem},
        "the client key is not the private key of the client certificate": {
            "client-certificate-data": cert, "client-key-data": _b64(other.key_pem())},
    }  # fmt: skip
    for i, (want, user) in enumerate(cases.items()):
        msg = _message(_kubeconfig(tmp_path / f"kc{i}", user))
        assert "PEM lib" not in msg and "\n" not in msg
        assert f"do not load: {want}" in msg, msg


def test_the_cli_prints_one_line_for_a_malformed_kubeconfig(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kc").write_text("a: [\n")
    assert main(["verify", "--kubeconfig", str(tmp_path / "kc")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did not find expected node content (line 2, column 1)" in err
