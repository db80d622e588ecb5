"""The two front doors: a small `kos demo` end to end, and `kos up` supervising and shutting down cleanly — both
secure by default (HTTPS, client certificates, a token per simulated node), kubectl and the official Python
`kubernetes` client working with `kos up`'s admin kubeconfig, and `--insecure` serving plain HTTP."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes  # type: ignore[import-untyped]
import pytest

from kos.api.types import GROUP
from kos.cli.up import UP_LINE
from kos.testing.process import free_port
from kos.testing.up import UpProcess

pytestmark = pytest.mark.system


def test_small_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "kos", "demo", "--nodes", "5", "--num-attachments", "200", "--rate", "100",
         "--num-nets", "10", "--top-net-size", "30", "--output", str(out), "--progress", "lines",
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "all invariants hold" in r.stdout
    assert " at https://127.0.0.1:" in r.stdout  # secure by default
    assert (tmp_path / "state" / "pki" / "ca.crt").is_file() and (tmp_path / "state" / "node-tokens.csv").is_file()
    s = json.loads((out / "summary.json").read_text())
    assert s["created"] == 200 and s["failed_creates"] == 0 and s["never_ready"] == 0 and s["ready"] == 200
    assert s["achieved_rate"] > 50 and s["achieved_create_rate"] > 0
    for stage in ("create", "create_to_addressed", "create_to_ready", "addressed_to_implemented"):
        st = s["latency_seconds"][stage]
        assert 0 < st["p50"] <= st["p90"] <= st["p99"] <= st["max"], (stage, st)
    for f in (
        "report.html",
        "latency-cdf.png",
        "latency-over-time.png",
        "throughput.png",
        "driver.metrics",
        "size-distribution.csv",
        "size-distribution-outline.csv",
        "attachments-ops-times.csv",
        "attachments.csv",
    ):
        assert (out / f).stat().st_size > 0, f  # fmt: skip
    assert (out / "latency-cdf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "latency-cdf.png" in html and "throughput.png" in html and "create → ready" in html
    metrics = (out / "driver.metrics").read_text()
    assert "kos_driver_attachment_create_to_ready_latency_seconds_bucket" in metrics
    assert 'kos_driver_successful_creates_total{runID="' in metrics


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_up_supervises_writes_a_kubeconfig_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    up = subprocess.Popen(
        [sys.executable, "-m", "kos", "up", "--nodes", "3", "--state-dir", str(state), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = []
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if UP_LINE in line:
                break
        assert any("kos is up" in ln for ln in lines), "".join(lines)
        kubeconfig = state / "kubeconfig"
        assert f"server: https://127.0.0.1:{port}" in kubeconfig.read_text()
        kubectl = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "kc"),
                                  "api-resources"], capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        if kubectl.returncode == 0:
            assert "networkattachments" in kubectl.stdout
        children = _children(up.pid)
        assert len(children) == 3
        # a crashed child is reported and restarted
        victim = children[1]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = _children(up.pid)
            if len(now) == 3 and victim not in now:
                break
            time.sleep(0.2)
        now = _children(up.pid)
        assert len(now) == 3 and victim not in now, now
        # Ctrl-C: everything stops, nothing is left running
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0  # the barrier: `kos up` exits only after it has reaped every child it stopped
        assert not any(_alive(p) for p in now), [p for p in now if _alive(p)]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if up.stdout is not None:
            up.stdout.close()


# --- kos up, secure and insecure ------------------------------------------------------------------------------

GROUP_VERSION = f"{GROUP}/v1alpha1"
SUBNET = {"apiVersion": GROUP_VERSION, "kind": "Subnet", "metadata": {"name": "s1", "namespace": "default"},
          "spec": {"vni": 77, "ipv4": "10.77.0.0/24"}}  # fmt: skip
NA = {"apiVersion": GROUP_VERSION, "kind": "NetworkAttachment", "metadata": {"name": "a1", "namespace": "default"},
      "spec": {"node": "node-1", "subnet": "s1"}}  # fmt: skip


def _kubectl(kubeconfig: Path, cache: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
                          input=stdin, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def _status(url: str, *, context: ssl.SSLContext | None = None, token: str = "", method: str = "GET",
            body: bytes | None = None) -> int:  # fmt: skip
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def _ready_na(api: Any, deadline: float) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(api)
    while True:
        na = custom.get_namespaced_custom_object(GROUP, "v1alpha1", "default", "networkattachments", "a1")
        st = na.get("status", {})
        if st.get("ipv4") and st.get("ifcName") and st.get("hostIP"):
            return dict(na)
        assert time.monotonic() < deadline, na
        time.sleep(0.2)


@pytest.mark.kubectl
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_up_is_secure_by_default_and_kubectl_and_the_kubernetes_client_use_its_kubeconfig(tmp_path: Path) -> None:
    port, state, cache = free_port(), tmp_path / "state", tmp_path / "kc"
    base = f"https://127.0.0.1:{port}"
    up = UpProcess(state, "--nodes", "3", port=port)
    try:
        kubeconfig = state / "kubeconfig"
        assert any(f"kos driver --kubeconfig {kubeconfig}" in ln for ln in up.lines), up.lines
        assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
        # kubectl with the admin's client certificate
        r = _kubectl(kubeconfig, cache, "get", "na", "-A")
        assert r.returncode == 0, r.stderr
        r = _kubectl(kubeconfig, cache, "create", "-f", "-", stdin=json.dumps(SUBNET))
        assert r.returncode == 0, r.stderr
        r = _kubectl(kubeconfig, cache, "get", "subnet", "s1", "-o", "json")
        assert r.returncode == 0 and json.loads(r.stdout)["spec"]["vni"] == 77, r.stdout + r.stderr
        # the official Python client, same kubeconfig: an attachment becomes ready (IPAM and a simulated node,
        # each with its own identity, did their parts)
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
        with kubernetes.client.ApiClient(config) as api:
            custom = kubernetes.client.CustomObjectsApi(api)
            assert (
                custom.get_namespaced_custom_object(GROUP, "v1alpha1", "default", "subnets", "s1")["spec"]["vni"] == 77
            )
            custom.create_namespaced_custom_object(GROUP, "v1alpha1", "default", "networkattachments", NA)
            na = _ready_na(api, time.monotonic() + 60)
        ca = ssl.create_default_context(cafile=state / "pki" / "ca.crt")
        nas = f"{base}/apis/{GROUP_VERSION}/namespaces/default/networkattachments"
        # anonymous: health only; plain HTTP: no answer at all
        assert _status(f"{base}/healthz", context=ca) == 200
        assert _status(nas, context=ca) == 401
        with pytest.raises((OSError, http.client.HTTPException)):
            _status(f"http://127.0.0.1:{port}/healthz")
        # a simulated node's token: reads, and (with the node restriction) cannot write another node's attachment
        tokens = {ln.split(",")[2]: ln.split(",")[0] for ln in (state / "node-tokens.csv").read_text().splitlines()}
        assert _status(nas, context=ca, token=tokens["node-0"]) == 200
        forged = {**na, "status": {**na["status"], "ifcName": "stolen"}}
        put = _status(f"{nas}/a1/status", context=ca, token=tokens["node-0"], method="PUT",
                      body=json.dumps(forged).encode())  # fmt: skip
        assert put == 403, "node-0 must not write node-1's attachment"
        assert _status(nas, context=ca, token="not-a-token") == 401
        # the nodes endpoint: HTTPS from the same CA
        verify = subprocess.run([sys.executable, "-m", "kos", "verify", "--kubeconfig", str(kubeconfig),
                                 "--nodes-endpoint", _nodes_endpoint(up.lines), "--wait", "30"],
                                capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        up.stop()
    # a second `kos up` with the same state directory keeps the CA: the old admin kubeconfig still works
    ca_before, old_kubeconfig = (state / "pki" / "ca.crt").read_bytes(), tmp_path / "old-kubeconfig"
    old_kubeconfig.write_bytes(kubeconfig.read_bytes())
    up = UpProcess(state, "--nodes", "3", port=port)
    try:
        assert (state / "pki" / "ca.crt").read_bytes() == ca_before
        r = _kubectl(old_kubeconfig, cache, "get", "subnet", "s1", "-o", "json")
        assert r.returncode == 0 and json.loads(r.stdout)["spec"]["vni"] == 77, r.stdout + r.stderr
    finally:
        up.stop()


def _nodes_endpoint(lines: list[str]) -> str:
    for ln in lines:
        if "--nodes-endpoint" in ln:
            return ln.split("--nodes-endpoint", 1)[1].split()[0]
    raise AssertionError(f"no nodes endpoint in {lines}")


def test_up_insecure_serves_plain_http_without_authentication(tmp_path: Path) -> None:
    port, state = free_port(), tmp_path / "state"
    up = UpProcess(state, "--insecure", "--nodes", "2", port=port)
    try:
        assert _status(f"http://127.0.0.1:{port}/apis/{GROUP_VERSION}/networkattachments") == 200  # nobody asked who
        assert f"server: http://127.0.0.1:{port}" in (state / "kubeconfig").read_text()
        assert not (state / "pki").exists() and not (state / "node-tokens.csv").exists()
        assert _status(_nodes_endpoint(up.lines) + "/nodes") == 200
    finally:
        up.stop()
