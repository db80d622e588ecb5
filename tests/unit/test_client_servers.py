"""Several apiservers for one client: `--server a,b` and the kubeconfig's `kos.example.com/servers` extension.

Both give `ClientConfig.endpoints` (the first the server kubectl would use); a bad URL in either is one
line naming the flag or the file, and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from kos.cli.clientflags import add_client_flags, client_config
from kos.cli.main import main
from kos.client.config import ClientConfig, split_servers
from kos.client.failover import FailoverTransport
from kos.client.rest import Client
from kos.http.clientpool import HTTPPool
from kos.pki.kubeconfig import SERVERS_EXTENSION, KubeConfigError, load_kubeconfig

A, B, C = "http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"


def write_kubeconfig(tmp_path: Path, server: str, extension: Any = None) -> Path:
    cluster: dict[str, Any] = {"server": server}
    if extension is not None:
        cluster["extensions"] = [{"name": "other.example.com/x", "extension": {"y": 1}},
                                 {"name": SERVERS_EXTENSION, "extension": extension}]  # fmt: skip
    doc = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "kos", "cluster": cluster}],
           "users": [{"name": "u", "user": {"token": "t"}}],
           "contexts": [{"name": "c", "context": {"cluster": "kos", "user": "u"}}], "current-context": "c"}  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def parse(*argv: str) -> ClientConfig:
    p = argparse.ArgumentParser()
    add_client_flags(p)
    config = client_config(p.parse_args(argv))
    assert config is not None
    return config


def test_a_comma_separated_server_flag_lists_every_server() -> None:
    config = parse("--server", f"{A}/, {B}")
    assert config.server == A and config.endpoints == (A, B)
    assert parse("--server", A).endpoints == (A,) and parse("--server", A).servers == ()


def test_the_kubeconfig_extension_lists_the_servers_after_its_server(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path, B, {"servers": [A, B, C + "/"]})
    assert load_kubeconfig(path).servers == (B, A, C)  # `server` first (kubectl's), then the others, once each
    config = ClientConfig.from_kubeconfig(path)
    assert config.endpoints == (B, A, C) and config.headers == {"Authorization": "Bearer t"}
    assert ClientConfig.from_kubeconfig(write_kubeconfig(tmp_path, A)).endpoints == (A,)
    # --server replaces them all, and the credentials still apply
    override = parse("--kubeconfig", str(path), "--server", f"{C},{A}")
    assert override.endpoints == (C, A) and override.headers == {"Authorization": "Bearer t"}


async def test_a_client_with_several_servers_fails_over_between_pools_one_per_server() -> None:
    async with Client(parse("--server", f"{A},{B}")) as c:
        t = c.transport
        assert isinstance(t, FailoverTransport) and t.servers == [A, B]
        assert [(p.host, p.port) for p in t.transports if isinstance(p, HTTPPool)] == [("10.0.0.1", 8080),
                                                                                       ("10.0.0.2", 8080)]  # fmt: skip
    async with Client(A) as one:
        assert isinstance(one.transport, HTTPPool)


@pytest.mark.parametrize(
    ("extension", "problem"),
    [
        ({"servers": [A, "ftp://x"]}, "'ftp://x' is not an http:// or https:// URL"),
        ({"servers": []}, "has no list of servers"),
        ({"servers": "http://a"}, "has no list of servers"),
        ({"servers": [A, "https://b:6443"]}, "mixes http:// and https:// servers"),
    ],
)
def test_a_bad_extension_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extension: Any, problem: str
) -> None:
    path = write_kubeconfig(tmp_path, A, extension)
    with pytest.raises(KubeConfigError, match=problem):
        load_kubeconfig(path)
    assert main(["verify", "--kubeconfig", str(path)]) == 2
    out, err = capsys.readouterr()
    assert not out and len(err.splitlines()) == 1
    assert err.startswith("kos verify: --kubeconfig / KOS_KUBECONFIG: ") and str(path) in err and problem in err


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"{A},ftp://x", "'ftp://x' is not an http:// or https:// URL"),
        (f"{A},", "'' is not an http:// or https:// URL"),
        (f"{A},https://b:6443", "mixes http:// and https:// servers"),
    ],
)
def test_a_bad_server_list_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], value: str, problem: str) -> None:
    assert main(["verify", "--server", value]) == 2
    out, err = capsys.readouterr()
    assert not out and len(err.splitlines()) == 1
    assert err.startswith("kos verify: --server / KOS_SERVER: ") and problem in err


def test_split_servers_refuses_an_empty_entry() -> None:
    assert split_servers(f"{A}, {B}/") == (A, B)
    with pytest.raises(ValueError):
        split_servers(f"{A},,{B}")
