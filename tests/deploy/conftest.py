"""Fixtures of the deployment checks: a PKI made by `kos certs` as docs/deploy.md makes it, and every overlay
of deploy/ rendered by `kubectl kustomize` (the aggregated one with that PKI's ca.crt, as an operator renders
it). kubectl is installed by `make test` as root (system-deps); without it these tests skip and say why."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import APISERVER_HOSTS, DEPLOY, ETCD_HOSTS, NODE, OVERLAYS, SERVER, render

from kos.cli.main import main as kos


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files docs/deploy.md has the operator make with `kos certs`: the kos PKI (pki/), etcd's own PKI
    (etcd-pki/: its "apiserver" certificate serves etcd, its "admin" one is the apiservers' client
    certificate), the controller manager's and one node's kubeconfigs."""
    root = tmp_path_factory.mktemp("kos-pki")
    steps = [
        ["certs", "init", "--pki", str(root / "pki"), "--hosts", APISERVER_HOSTS, "--server", SERVER],
        ["certs", "init", "--pki", str(root / "etcd-pki"), "--hosts", ETCD_HOSTS],
        ["certs", "issue", "--pki", str(root / "pki"), "--user", "system:kos:controller-manager",
         "--kubeconfig-out", str(root / "controller-manager.kubeconfig"), "--server", SERVER],
        ["certs", "issue", "--pki", str(root / "pki"), "--user", f"system:node:{NODE}", "--group", "system:nodes",
         "--kubeconfig-out", str(root / f"{NODE}.kubeconfig"), "--server", SERVER],
    ]  # fmt: skip
    for argv in steps:
        assert kos(argv) == 0, f"kos {' '.join(argv)} failed"
    return root


@pytest.fixture(scope="session")
def rendered(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each overlay's objects, rendered from a copy of deploy/ (the aggregated overlay with ca.crt in it)."""
    copy = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, copy)
    shutil.copy(pki / "pki" / "ca.crt", copy / "overlays" / "aggregated" / "ca.crt")
    return {name: render(copy / "overlays" / name) for name in OVERLAYS}
