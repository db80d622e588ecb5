"""kos up's cluster.json (kos.util.clusterfile: replaced whole, roles checked) and kos up --ha's etcd members
(kos.util.clusteretcd: ports kept in the state directory, TLS flags, the storage URL)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from kos.cli import clusterpki
from kos.util import clusteretcd, clusterfile


def test_cluster_file_is_replaced_whole_and_removed(tmp_path: Path) -> None:
    path = tmp_path / clusterfile.FILE_NAME
    comps = [clusterfile.Component("etcd-0", "etcd", 11, "https://127.0.0.1:1", "https://127.0.0.1:1/metrics"),
             clusterfile.Component("simnodes", "simnodes", None, None, "https://127.0.0.1:2/metrics")]  # fmt: skip
    clusterfile.write(path, comps, tmp_path / "kubeconfig")
    doc = json.loads(path.read_text())
    assert doc == {"components": [
        {"name": "etcd-0", "role": "etcd", "pid": 11, "url": "https://127.0.0.1:1", "metrics_url": "https://127.0.0.1:1/metrics"},
        {"name": "simnodes", "role": "simnodes", "pid": None, "url": None, "metrics_url": "https://127.0.0.1:2/metrics"},
    ], "kubeconfig": str((tmp_path / "kubeconfig").resolve())}  # fmt: skip
    clusterfile.write(path, comps[:1], tmp_path / "kubeconfig")
    assert len(json.loads(path.read_text())["components"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [clusterfile.FILE_NAME]  # no temporary file left
    clusterfile.remove(path)
    clusterfile.remove(path)  # already gone: not an error
    assert not path.exists()


def test_cluster_file_refuses_an_unknown_role_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / clusterfile.FILE_NAME
    clusterfile.write(path, [clusterfile.Component("a", "agent", 1, None, None)], tmp_path / "kubeconfig")
    before = path.read_text()
    with pytest.raises(ValueError, match="role 'scheduler'"):
        clusterfile.write(path, [clusterfile.Component("s", "scheduler", 2, None, None)], tmp_path / "kubeconfig")
    assert path.read_text() == before


def test_etcd_members_are_kept_across_starts(tmp_path: Path) -> None:
    first, token = clusteretcd.members(tmp_path)
    assert [m.name for m in first] == ["etcd-0", "etcd-1", "etcd-2"]
    ports = [p for m in first for p in (m.client_port, m.peer_port)]
    assert len(set(ports)) == 6
    again, token2 = clusteretcd.members(tmp_path)
    assert again == first and token2 == token  # etcd remembers its peers' URLs: the same ports, the same data
    assert all(m.data_dir == tmp_path / "etcd" / f"{m.name}.data" for m in first)


def test_etcd_flags_and_storage_url_under_tls(tmp_path: Path) -> None:
    state = tmp_path / "a b&c"  # a path that must be quoted in the URL's query
    files = clusterpki.prepare_etcd(state)
    ms, token = clusteretcd.members(state)
    argv = clusteretcd.args(ms[1], ms, token, files)
    flag = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert flag["--listen-client-urls"] == flag["--advertise-client-urls"] == f"https://127.0.0.1:{ms[1].client_port}"
    assert flag["--initial-cluster"] == ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in ms)
    assert flag["--initial-cluster-token"] == token and flag["--data-dir"] == str(ms[1].data_dir)
    assert flag["--trusted-ca-file"] == str(files.ca) and flag["--cert-file"] == str(files.server_cert)
    assert "--client-cert-auth" in argv
    url = clusteretcd.storage_url(ms, files)
    where, _, query = url.partition("?")
    assert where == "etcd://" + ",".join(f"127.0.0.1:{m.client_port}" for m in ms)
    assert dict(urllib.parse.parse_qsl(query)) == {
        "cacert": str(files.ca.resolve()), "cert": str(files.client_cert.resolve()),
        "key": str(files.client_key.resolve()),
    }  # fmt: skip
    assert clusteretcd.storage_url(ms, None) == where  # in clear: no query
    assert "--client-cert-auth" not in clusteretcd.args(ms[0], ms, token, None)


def test_etcd_pki_is_its_own_ca_and_kept(tmp_path: Path) -> None:
    files = clusterpki.prepare_etcd(tmp_path)
    cluster = clusterpki.prepare(tmp_path, "https://127.0.0.1:8080", [], ["node-0"])
    assert files.ca.read_bytes() != cluster.ca_file.read_bytes()  # no cluster certificate opens etcd
    before = {p: p.read_bytes() for p in (files.ca, files.server_cert, files.client_cert)}
    again = clusterpki.prepare_etcd(tmp_path)
    assert again == files and {p: p.read_bytes() for p in before} == before
    assert oct(files.client_key.stat().st_mode & 0o777) == "0o600"


def test_read_gives_back_what_write_wrote_and_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / clusterfile.FILE_NAME
    comps = [clusterfile.Component("etcd-0", "etcd", 11, "https://127.0.0.1:1", "https://127.0.0.1:1/metrics"),
             clusterfile.Component("apiserver-0", "apiserver", None, "https://127.0.0.1:2", None)]  # fmt: skip
    clusterfile.write(path, comps, tmp_path / "kubeconfig")
    got = clusterfile.read(path)
    assert list(got.components) == comps and got.kubeconfig == (tmp_path / "kubeconfig").resolve()
    assert got.by_role("apiserver") == comps[1:]
    path.write_text('{"components": [{"name": "x"}], "kubeconfig": "k"}')
    with pytest.raises(ValueError, match=r"not a kos cluster\.json"):
        clusterfile.read(path)
    with pytest.raises(FileNotFoundError):
        clusterfile.read(tmp_path / "absent.json")


def test_etcd_files_name_what_prepare_etcd_makes(tmp_path: Path) -> None:
    assert clusteretcd.etcd_files(tmp_path) == clusterpki.prepare_etcd(tmp_path)
