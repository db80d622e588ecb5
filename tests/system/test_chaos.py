"""`kos chaos` against a real `kos up --ha` (3 etcd members, 2 apiservers, 2 controller managers, simulated
nodes): every fault once under a workload, then the history checked against etcd's own.

What is asserted is correctness only: the run exits 0 (no acknowledged write lost, every watch stream equal to
the store's history, no duplicate address at any revision, `kos verify` and readiness at the end, every fault
recovered from), every fault is reported with a measured stall and recovery, the history file holds the
calls and the faults, and the quorum loss showed its failures as 503s. Stalls are figures, not assertions:
they depend on the machine (docs/reliability.md has a longer run's).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kos.chaos import faults
from kos.chaos.history import Call, Fault, read
from kos.testing.up import UpProcess

pytestmark = [pytest.mark.system, pytest.mark.skipif(shutil.which("etcd") is None, reason="needs the etcd binary")]


def test_chaos_every_fault_once_on_kos_up_ha(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = UpProcess(state, "--ha", "--nodes", "3", "--log-level", "warning")
    try:
        history = tmp_path / "history.jsonl"
        # 7 faults need ~75 s (apiserver-stop 20 s, quorum-loss 10 s, each kill a few s): 90 s leaves short gaps
        r = subprocess.run(
            [sys.executable, "-m", "kos", "chaos", "--state-dir", str(state), "--seed", "13", "--duration", "90",
             "--history", str(history), "--rate", "8"],
            capture_output=True, text=True, timeout=360, check=False,
        )  # fmt: skip
        out = r.stdout
        assert r.returncode == 0, out + r.stderr[-3000:]
        assert "no violation" in out
        for name in faults.FAULTS:  # every fault reported, recovered, with its figures
            (row,) = [ln for ln in out.splitlines() if ln.startswith(name + " ")]
            assert "never" not in row, row
        records = list(read(history))
        done = {f.name: f for f in records if isinstance(f, Fault)}
        assert sorted(done) == sorted(faults.FAULTS) and all(f.healed >= f.start > 0 for f in done.values())
        calls = [c for c in records if isinstance(c, Call)]
        assert sum(c.outcome == "ok" and c.op == "create" for c in calls) > 50
        quorum = done["quorum-loss"]
        failed = [c for c in calls if c.outcome != "ok" and quorum.start <= c.end and c.start <= quorum.healed]
        assert not failed or any(c.code == 503 for c in failed), failed  # clear Unavailable, not only hangs
    finally:
        up.stop(check=False)
