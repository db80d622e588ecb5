"""What the deployment checks share: where deploy/ is, the names the manifests use, rendering an overlay with
`kubectl kustomize`, and finding objects in what it rendered."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("standalone", "aggregated")
NAMESPACE = "example-com"
APISERVER_HOSTS = "kos-apiserver.example-com.svc,kos-apiserver.example-com.svc.cluster.local"
ETCD_HOSTS = "*.kos-etcd.example-com.svc,*.kos-etcd.example-com.svc.cluster.local,localhost,127.0.0.1"
SERVER = "https://kos-apiserver.example-com.svc:443"
NODE = "worker-1"


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (make test installs it as root: Debian's kubernetes-client)")
    return found


def render(overlay_dir: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize overlay_dir` as objects; fails the test with kustomize's message if it cannot."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(overlay_dir)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay_dir} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of `kind` named `name`; fails the test if there is none."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
