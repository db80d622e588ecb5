"""`kos up` writes `<state-dir>/cluster.json` (every process, its pid, client URL and /metrics), keeps it
current when a child is restarted and removes it on a clean stop; `kos up --ha` runs 3 etcd members, two
apiservers over them and two controller managers, each listed there and each serving."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from kos.api.types import API_VERSION, GROUP
from kos.cli.cluster import Child, Cluster, ClusterSettings
from kos.pki.kubeconfig import load_kubeconfig
from kos.testing.clock import FakeClock
from kos.testing.up import UpProcess

pytestmark = pytest.mark.system

SUBCOMMAND = {"apiserver": "apiserver", "controller-manager": "controller-manager", "simnodes": "simnodes"}


def _cluster(state: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((state / "cluster.json").read_text())
    return doc


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _context(pki: Path, ca: str, cert: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / ca))
    ctx.load_cert_chain(pki / f"{cert}.crt", pki / f"{cert}.key")
    return ctx


def _get(url: str, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
        return r.status, r.read()


def _check_components(up: UpProcess, state: Path) -> dict[str, Any]:
    """Every pid of cluster.json is a live child of `up` running its role; every url and metrics_url answers."""
    doc = _cluster(state)
    assert doc["kubeconfig"] == str((state / "kubeconfig").resolve())
    pki = state / "pki"
    kos_ctx = _context(pki, "ca.crt", "admin")
    for c in doc["components"]:
        pid = c["pid"]
        assert isinstance(pid, int) and _alive(pid) and _ppid(pid) == up.proc.pid, c
        argv = _cmdline(pid)
        if c["role"] == "etcd":
            assert Path(argv[0]).name == "etcd" and argv[argv.index("--name") + 1] == c["name"], argv
            ctx = _context(pki / "etcd", "ca.crt", "apiserver-etcd-client")
            assert c["url"].startswith("https://")
            status, body = _get(c["url"] + "/health", ctx)
            assert status == 200 and json.loads(body)["health"] == "true"
        else:
            assert argv[1:4] == ["-m", "kos", SUBCOMMAND[c["role"]]], argv
            ctx = kos_ctx
            if c["role"] == "apiserver":
                assert c["url"].startswith("https://")
                assert _get(c["url"] + "/readyz", ctx)[0] == 200
            else:
                assert c["url"] is None
        assert c["metrics_url"].startswith("https://") and c["metrics_url"].endswith("/metrics")
        status, body = _get(c["metrics_url"], ctx)
        assert status == 200 and b"# TYPE " in body, c
    return doc


def _stop(up: UpProcess, state: Path, pids: list[int]) -> None:
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(60) == 0
    assert not (state / "cluster.json").exists()  # a clean stop removes it
    assert not [p for p in pids if _alive(p)]


def test_up_writes_cluster_json_and_follows_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = UpProcess(state, "--nodes", "2")
    try:
        doc = _check_components(up, state)
        assert sorted(c["role"] for c in doc["components"]) == ["apiserver", "controller-manager", "simnodes"]
        cm = next(c for c in doc["components"] if c["role"] == "controller-manager")
        os.kill(cm["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        new: Any = None
        while time.monotonic() < deadline:
            new = next(c for c in _cluster(state)["components"] if c["role"] == "controller-manager")["pid"]
            if new not in (None, cm["pid"]):
                break
            time.sleep(0.1)
        assert new not in (None, cm["pid"]) and _alive(new) and _ppid(new) == up.proc.pid, new
        pids = [c["pid"] for c in _cluster(state)["components"]]
        _stop(up, state, pids)
    finally:
        up.stop(check=False)


@pytest.mark.skipif(shutil.which("etcd") is None, reason="needs the etcd binary")
def test_up_ha_runs_three_etcd_two_apiservers_two_controller_managers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = UpProcess(state, "--nodes", "2", "--ha")
    lines = up.lines
    try:
        doc = _check_components(up, state)
        roles = sorted(c["role"] for c in doc["components"])
        assert roles == ["apiserver"] * 2 + ["controller-manager"] * 2 + ["etcd"] * 3 + ["simnodes"], roles
        servers = [c["url"] for c in doc["components"] if c["role"] == "apiserver"]
        assert len(set(servers)) == 2 and all(s in "".join(lines) for s in servers)
        kubeconfig = state / "kubeconfig"
        assert sorted(load_kubeconfig(kubeconfig).servers) == sorted(servers)  # kos clients fail over across both

        def kubectl(server: str, *args: str, stdin: str | None = None) -> str:
            r = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--server", server,
                                "--cache-dir", str(tmp_path / "kc"), *args],
                               input=stdin, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
            assert r.returncode == 0, r.stderr
            return r.stdout

        for s in servers:
            assert kubectl(s, "get", "sn", "-A", "-o", "name") == ""
        subnet = {"apiVersion": API_VERSION, "kind": "Subnet", "metadata": {"name": "ha", "namespace": "default"},
                  "spec": {"vni": 4242, "ipv4": "10.42.0.0/24"}}  # fmt: skip
        kubectl(servers[0], "create", "--validate=false", "-f", "-", stdin=yaml.safe_dump(subnet))
        for s in servers:  # the second apiserver serves what the first one wrote (one etcd behind both)
            assert kubectl(s, "get", "sn", "-A", "-o", "name").split() == [f"subnet.{GROUP}/ha"]
        # an etcd member killed comes back on its data directory (same flags), under a new pid, and is healthy
        member = next(c for c in doc["components"] if c["name"] == "etcd-2")
        os.kill(member["pid"], signal.SIGKILL)
        ctx = _context(state / "pki" / "etcd", "ca.crt", "apiserver-etcd-client")
        deadline, healthy = time.monotonic() + 60, False
        while time.monotonic() < deadline and not healthy:
            time.sleep(0.2)
            now = next(c for c in _cluster(state)["components"] if c["name"] == "etcd-2")
            if now["pid"] in (None, member["pid"]):
                continue
            try:
                healthy = json.loads(_get(member["url"] + "/health", ctx)[1])["health"] == "true"
            except OSError:
                pass
        assert healthy, (state / "logs" / "etcd-2.log").read_text()[-2000:]
        doc = _check_components(up, state)
        for s in servers:
            assert kubectl(s, "get", "sn", "-A", "-o", "name").split() == [f"subnet.{GROUP}/ha"]
        pids = [c["pid"] for c in doc["components"]]
        _stop(up, state, pids)
    finally:
        up.stop(check=False)


def test_up_ha_without_etcd_says_so_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no etcd there
    r = subprocess.run([sys.executable, "-m", "kos", "up", "--ha", "--state-dir", str(tmp_path / "state")],
                       capture_output=True, text=True, timeout=60, env=env, check=False)  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        "kos up: --ha needs the etcd binary on PATH (Debian: apt-get install etcd-server)"
    ]
    assert not (tmp_path / "state").exists()  # nothing started, nothing made


async def test_each_child_restarts_after_its_own_backoff_and_cluster_json_follows(tmp_path: Path) -> None:
    """A child deep in its crash-loop backoff (30 s) does not hold back another child's first restart (1 s);
    cluster.json shows pid null while a child waits and its new pid once restarted. Times are a FakeClock's;
    only the processes' exits are real (awaited, not slept on)."""
    clock = FakeClock()
    cluster = Cluster(ClusterSettings(state_dir=tmp_path, nodes=1, insecure=True), clock=clock)
    sleep = shutil.which("sleep")
    assert sleep is not None
    cluster.children = [
        Child(name, ["600"], "", tmp_path / f"{name}.log", clock=clock, role=role, program=(sleep,))
        for name, role in (("a", "apiserver"), ("b", "controller-manager"))
    ]
    a, b = cluster.children
    for c in cluster.children:
        await c.start()
    cluster.write_cluster_file()
    cluster._supervisor = asyncio.create_task(cluster._supervise())
    try:
        a.restarts = 6  # the next backoff is the longest
        a_pid, b_pid = _kill(a), _kill(b)
        await asyncio.wait_for(asyncio.gather(*(c.proc.wait() for c in (a, b) if c.proc is not None)), 10)
        await clock.advance(0.5)  # the supervisor sees both exits
        pids = {c["name"]: c["pid"] for c in _cluster(tmp_path)["components"]}
        assert pids == {"a": None, "b": None}
        await clock.advance(1.0)  # b's first backoff (1 s) is over; a's (30 s) is not
        pids = {c["name"]: c["pid"] for c in _cluster(tmp_path)["components"]}
        assert pids["a"] is None and pids["b"] not in (None, b_pid) and _alive(pids["b"])
        await clock.advance(30.0)
        pids = {c["name"]: c["pid"] for c in _cluster(tmp_path)["components"]}
        assert pids["a"] not in (None, a_pid) and _alive(pids["a"])
    finally:
        await cluster.stop()
    assert not (tmp_path / "cluster.json").exists()


def _kill(c: Child) -> int:
    assert c.proc is not None
    c.proc.kill()
    pid: int = c.proc.pid
    return pid
