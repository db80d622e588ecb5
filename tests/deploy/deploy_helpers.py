"""What the deployment checks share: where deploy/ is, the names the manifests use, rendering an overlay with
`kubectl kustomize`, and finding objects in what it rendered."""

from __future__ import annotations

import re
import shlex
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


KOS_WORKLOADS = ("kos-etcd", "kos-apiserver", "kos-controller-manager", "kos-agent")
"""The workloads of deploy/base (deploy/monitoring's, helper M's, are checked by their own tests)."""
KOS_SERVICE_ACCOUNTS = KOS_WORKLOADS


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Deployments, StatefulSets and DaemonSets of deploy/base."""
    return [o for o in objects
            if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet") and o["metadata"]["name"] in KOS_WORKLOADS]  # fmt: skip


DOCS = ROOT / "docs" / "deploy.md"


def documented_commands(program: str) -> list[list[str]]:
    """The command lines of docs/deploy.md's code blocks that start with `program` (e.g. "kos certs"), each
    split as the shell would, continuation lines joined and `$S` (the server) and `$n` (a node) filled in."""
    blocks = re.findall(r"^```\n(.*?)^```", DOCS.read_text(), flags=re.S | re.M)
    text = "\n".join(blocks).replace("\\\n", " ")
    out = []
    for raw in text.splitlines():
        line = raw.strip().replace("$S", SERVER).replace("$n", NODE)
        if line.startswith(program + " "):
            out.append(shlex.split(line, comments=True))
    return out


def documented_secrets() -> dict[str, dict[str, str]]:
    """Secret → key → file, from docs/deploy.md's `kubectl create secret generic NAME --from-file=KEY=FILE`."""
    secrets = {}
    for argv in documented_commands("kubectl"):
        if argv[3:6] == ["create", "secret", "generic"]:
            files = [a.removeprefix("--from-file=").split("=", 1) for a in argv if a.startswith("--from-file=")]
            secrets[argv[6]] = {key: path for key, path in files}
    return secrets
