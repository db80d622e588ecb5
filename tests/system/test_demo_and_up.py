"""The two front doors: a small `kos demo` end to end, and `kos up` supervising and shutting down cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kos.testing.process import free_port

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
            if "Ctrl-C stops everything" in line:
                break
        assert any("kos is up" in ln for ln in lines), "".join(lines)
        kubeconfig = state / "kubeconfig"
        assert f"server: http://127.0.0.1:{port}" in kubeconfig.read_text()
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
