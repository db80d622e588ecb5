"""Fixtures of the deployment checks: a PKI made by `kos certs` as docs/deploy.md makes it, and every overlay
of deploy/ rendered by `kubectl kustomize` (the aggregated one with that PKI's ca.crt, as an operator renders
it). kubectl is installed by `make test` as root (system-deps); without it these tests skip and say why."""

from __future__ import annotations

import contextlib
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import DEPLOY, OVERLAYS, documented_commands, render

from kos.cli.main import main as kos


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files docs/deploy.md has the operator make: its `kos certs` commands, run as shown (the server
    `$S` and the node `$n` filled in) in a temporary directory."""
    root = tmp_path_factory.mktemp("kos-pki")
    commands = documented_commands("kos certs")
    assert len(commands) >= 4, "docs/deploy.md shows fewer kos certs commands than init x2 and issue x2"
    with contextlib.chdir(root):
        Path("nodes").mkdir()
        for argv in commands:
            assert kos(argv[1:]) == 0, f"{shlex.join(argv)} (docs/deploy.md) failed"
    return root


@pytest.fixture(scope="session")
def rendered(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each overlay's objects, rendered from a copy of deploy/ (the aggregated overlay with ca.crt in it)."""
    copy = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, copy)
    shutil.copy(pki / "pki" / "ca.crt", copy / "overlays" / "aggregated" / "ca.crt")
    return {name: render(copy / "overlays" / name) for name in OVERLAYS}
