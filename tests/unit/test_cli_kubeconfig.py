"""`--kubeconfig` and `--server` on every command that talks to the apiserver (kos.cli.clientflags): the settings
carry the kubeconfig's server, TLS context and token; `--server` overrides the server only; a bad kubeconfig is
one line and exit status 2; `kos agent` refuses another node's identity; `kos simnodes --node-tokens` finds
each node's token and names the nodes without one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from kos.cli import agent, controller_manager, driver, simnodes, trace, verify
from kos.cli.main import main
from kos.cli.settings import SettingError, SettingsParser
from kos.pki.authority import issue_client, new_ca
from kos.pki.kubeconfig import kubeconfig

SERVER = "https://127.0.0.1:6443"


@pytest.fixture(scope="module")
def node_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ca = new_ca("ca")
    path = tmp_path_factory.mktemp("kc") / "node-a.kubeconfig"
    path.write_bytes(kubeconfig(SERVER, ca.cert_pem(), issue_client(ca, "system:node:node-a", ["system:nodes"]), "n"))
    return path


@pytest.fixture
def token_kubeconfig(tmp_path: Path) -> Path:
    doc = {
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:8080"}}],
        "users": [{"name": "u", "user": {"token": "s3cret"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }
    path = tmp_path / "token.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def parse(module: Any, argv: list[str]) -> Any:
    p = SettingsParser(prog="kos x")
    module.add_arguments(p)
    return module.settings_from(p.parse_args(argv))


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def test_the_controller_manager_takes_the_kubeconfig(node_kubeconfig: Path) -> None:
    s = parse(controller_manager, ["--kubeconfig", str(node_kubeconfig)]).settings
    assert s.server == SERVER and s.client is not None and s.client.ssl is not None
    assert s.client.ssl.get_ca_certs()[0]["subject"] == ((("commonName", "ca"),),)
    s = parse(controller_manager, ["--kubeconfig", str(node_kubeconfig), "--server", "https://10.0.0.1:443"]).settings
    assert s.server == "https://10.0.0.1:443" and s.client.ssl is not None  # the CA and certificate still apply


def test_a_token_from_the_kubeconfig_and_from_the_environment(
    token_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOS_KUBECONFIG", str(token_kubeconfig))
    for module, extra in ((verify, []), (trace, ["--nodes-endpoint", "http://x", "a/b", "a/c"]), (driver, [])):
        s = parse(module, extra)
        cfg = s.server if module is not driver else s.client
        assert cfg.server == "http://127.0.0.1:8080" and cfg.ssl is None
        assert cfg.headers == {"Authorization": "Bearer s3cret"}
        assert "s3cret" not in repr(cfg)


def test_a_server_alone_is_https_against_the_system_cas() -> None:
    s = parse(controller_manager, ["--server", SERVER]).settings
    assert s.client.kubeconfig is None and s.client.headers == {}
    assert s.client.ssl is not None and s.client.ssl.check_hostname


def test_the_agent_runs_as_its_node(node_kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = parse(agent, ["--kubeconfig", str(node_kubeconfig), "--node", "node-a", "--host-ip", "10.0.0.1"])
    assert s.client.server == SERVER
    assert main(["agent", "--kubeconfig", str(node_kubeconfig), "--node", "node-b", "--host-ip", "10.0.0.1"]) == 2
    assert one_line(capsys) == (
        "kos agent: --kubeconfig / KOS_KUBECONFIG: its client certificate is node 'node-a' (system:node:node-a), "
        "not --node 'node-b'"
    )


def test_a_bad_kubeconfig_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kc").write_text("current-context: c\ncontexts: []\n")
    assert main(["controller-manager", "--kubeconfig", str(tmp_path / "kc")]) == 2
    assert one_line(capsys) == (
        f"kos controller-manager: --kubeconfig / KOS_KUBECONFIG: {tmp_path / 'kc'}: no context named 'c' in contexts"
    )


def test_simnodes_node_tokens(tmp_path: Path, token_kubeconfig: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    lines = [
        't0,system:node:n0,uid0,"system:nodes"',
        "",
        "t1,system:node:n1,uid1",
        ",system:node:n2,uid2",  # an empty token: skipped
        "t9,kos:admin,admin,system:masters",
        "t3, system:node:n3,uid3",  # nothing trimmed, as kube-apiserver reads it: the user ' system:node:n3'
    ]
    tokens.write_text("\n".join(lines) + "\n")
    s = parse(simnodes, ["--kubeconfig", str(token_kubeconfig), "--count", "2", "--name-prefix", "n",
                         "--node-tokens", str(tokens)])  # fmt: skip
    assert s.node_tokens == {"n0": "t0", "n1": "t1"}
    assert "t0" not in repr(s)
    with pytest.raises(SettingError, match=r"has no token for the user system:node:<node> of n2, n3$"):
        parse(simnodes, ["--server", "http://x:1", "--count", "4", "--name-prefix", "n", "--node-tokens", str(tokens)])
    tokens.write_text("t,system:node:node-0,u\nonly,two\n")
    with pytest.raises(SettingError, match=r"tokens.csv:2: a token line needs at least 3 columns"):
        parse(simnodes, ["--server", "http://x:1", "--count", "1", "--node-tokens", str(tokens)])
    tokens.write_text("t,,u\n")
    with pytest.raises(SettingError, match=r"tokens.csv:1: empty user name"):
        parse(simnodes, ["--server", "http://x:1", "--count", "1", "--node-tokens", str(tokens)])


def test_every_client_command_has_both_flags() -> None:
    for module in (agent, controller_manager, driver, simnodes, trace, verify):
        p = argparse.ArgumentParser()
        module.add_arguments(p)
        flags = {o for a in p._actions for o in a.option_strings}
        assert {"--server", "--kubeconfig"} <= flags, module.__name__
