"""The in-cluster Prometheus's web listener (Service kos-prometheus:9090) has no authentication and no
NetworkPolicy, so any pod of the cluster reaches it. Its HTTP endpoints that change Prometheus stay off:
`--web.enable-lifecycle` would let anyone POST /-/quit (stopping it, again and again: monitoring blinded) or
/-/reload, and `--web.enable-admin-api` would let anyone delete series. Nothing needs them: a changed
configuration is a new generated ConfigMap name, which rolls the Deployment."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from kos.testing.monitoring import MONITORING

MUTATING_WEB_FLAGS = ("--web.enable-lifecycle", "--web.enable-admin-api", "--web.enable-remote-write-receiver")


def _rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (make test installs it as root: Debian's kubernetes-client)")
    done = subprocess.run([kubectl, "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_prometheus_serves_no_endpoint_that_changes_it() -> None:
    objs = _rendered()
    [prom] = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "kos-prometheus"]
    [container] = prom["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert any(a.startswith("--config.file=") for a in args)  # the arguments are where this looks
    assert [a for a in args if a.split("=")[0] in MUTATING_WEB_FLAGS] == []
    configs = [o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"]
    assert any(n.startswith("kos-prometheus-config-") for n in configs), "the config's name carries its hash"
