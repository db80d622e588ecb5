"""`kos demo --monitoring` runs Prometheus with the cluster and adds plots of its queries over the run to the
report (apiserver request rate, watch events, IPAM latency), each with data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kos.cli.monitoringplots import PLOTS

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="prometheus is not installed (Debian: apt-get install prometheus)"),
]  # fmt: skip


def test_demo_with_monitoring_adds_prometheus_plots_to_the_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    demo = subprocess.run(
        [sys.executable, "-m", "kos", "demo", "--monitoring", "--nodes", "3", "--num-attachments", "80", "--rate", "20",
         "--num-nets", "4", "--top-net-size", "8", "--output", str(out), "--state-dir", str(tmp_path / "state"),
         "--progress", "none"],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    output = demo.stdout + demo.stderr
    assert "drawing plots from Prometheus" in output, output
    assert "plots from Prometheus:" not in output, output  # no query failed, every plot had data
    page = (out / "report.html").read_text()
    assert "<h2>From Prometheus</h2>" in page
    for plot in PLOTS:
        assert f'src="{plot.file}"' in page
        assert (out / plot.file).stat().st_size > 10_000, plot.file  # a drawn plot, not an empty canvas
    assert not (tmp_path / "state" / "cluster.json").exists(), "the demo stopped its cluster, Prometheus included"
