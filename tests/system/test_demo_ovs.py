"""`kos demo --fabric ovs`: the main job on a real datapath, small, end to end — and nothing left behind.

Two simulated hosts (network namespaces, each with its own ovsdb-server and ovs-vswitchd, userspace datapath),
one real `kos agent --fabric ovs` in each, the driver with ping tests across the VXLAN underlay, kos verify.
After it, and after a run stopped by SIGINT or SIGTERM mid-run, no namespace, link, process or directory of
the demo remains; a run after a SIGKILLed one removes what that one left and passes. Root only (skipped with
the reason otherwise); the runs take ~15 s each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kos.cli import demoovs
from kos.testing import ovs as ovslab

WHY = ovslab.missing()
pytestmark = [pytest.mark.system, pytest.mark.skipif(bool(WHY), reason=f"kos demo --fabric ovs: {WHY}")]

SMALL = ["--hosts", "2", "--num-attachments", "16", "--rate", "5", "--num-nets", "2", "--top-net-size", "8",
         "--threads", "2", "--test-fraction", "0.5", "--progress", "lines"]  # fmt: skip


def demo(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kos", "demo", "--fabric", "ovs", *SMALL, "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "250"})  # fmt: skip  # rich wraps nothing the test reads


def read_until(p: subprocess.Popen[str], text: str, timeout: float = 120) -> str:
    """The demo's output up to the first line holding `text` (AssertionError if it exits or times out first)."""
    assert p.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    p.kill()
    p.communicate(timeout=30)
    raise AssertionError(f"no {text!r} in the demo's output:\n{''.join(seen)[-3000:]}")


def leftovers() -> list[str]:
    """What of a demo is still there: namespaces and links with its prefix, processes naming its directory, the
    directory."""
    out = [f"netns {n}" for n in ovslab.netns_with_prefix(demoovs.PREFIX)]
    out += [f"link {n}" for n in ovslab.links_with_prefix(demoovs.PREFIX)]
    out += [f"process {p}: {Path(f'/proc/{p}/cmdline').read_bytes()[:200]!r}"
            for p in ovslab.processes_naming(demoovs.WORKDIR)]  # fmt: skip
    if demoovs.WORKDIR.exists():
        out.append(f"directory {demoovs.WORKDIR}")
    return out


def test_a_small_demo_passes_its_ping_tests_and_verify_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = demo(out)
    text, _ = p.communicate(timeout=240)
    print(text)
    assert p.returncode == 0, text[-4000:]
    s = json.loads((out / "summary.json").read_text())
    tests = s["tests"]
    assert tests["full"] > 0 and tests["full_passed"] == tests["full"], tests
    assert tests["half_passed"] == tests["half"] and not tests["failed_names"], tests
    assert s["never_ready"] == 0 and s["ready"] == 16
    assert f"ping tests: {tests['full']} full ({tests['full']} passed)" in text and "failed:" not in text
    assert "kos verify: all invariants hold" in text
    for stage in ("create_to_ready", "create_to_tested", "ready_to_tested"):
        st = s["latency_seconds"][stage]
        assert 0 < st["p50"] <= st["p99"] <= st["max"], (stage, st)
    report = (out / "report.html").read_text()
    assert "tested-latency histograms" in report and (out / "tested-latency.png").stat().st_size > 0
    assert "create → tested" in report
    assert not leftovers(), leftovers()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopped_mid_run_it_tears_everything_down(tmp_path: Path, sig: signal.Signals) -> None:
    p = demo(tmp_path / "run")
    read_until(p, "operations, ")  # the driver's first progress line: it runs
    assert ovslab.netns_with_prefix(demoovs.PREFIX), "the lab runs"
    p.send_signal(sig)
    text, _ = p.communicate(timeout=120)
    assert p.returncode == 1 and "interrupted" in text, text[-3000:]
    assert not leftovers(), leftovers()


def test_a_run_after_a_sigkilled_one_clears_its_leftovers(tmp_path: Path) -> None:
    p = demo(tmp_path / "killed")
    read_until(p, "driving")
    p.kill()
    p.communicate(timeout=30)
    assert leftovers(), "a SIGKILLed demo leaves its lab running"
    p = demo(tmp_path / "run")
    text, _ = p.communicate(timeout=240)
    assert p.returncode == 0, text[-4000:]
    assert "removing what an earlier run left" in text
    assert not leftovers(), leftovers()
