"""The run directory's set-up files, written before the run: the size distribution and the schedule (CSV).

The formats are the original driver's: `size-distribution.csv` and its outline (`I,size`), and
`attachments-ops-times.csv` (a `distribution: …, rate: …` line, then `op,thd,dt from start (secs)`).
The per-NA CSV, the plots and the HTML report come after the run (`report.py`).
"""

from __future__ import annotations

import csv
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from kos.driver import distribution


def write_plan_files(out: Path, plan: distribution.Plan) -> None:
    """Create `out` and write the plan's size distribution and its outline into it."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"size-distribution.csv": plan.size_rows(), "size-distribution-outline.csv": plan.outline_rows()}
    for name, rows in files.items():
        with open(out / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["I", "size"])
            w.writerows(rows)


def write_schedule(out: Path, offsets: list[float], *, distribution_name: str, rate: float, threads: int) -> None:
    """Each operation's offset from the start (seconds) and the worker (1-based) that takes it."""
    with open(out / "attachments-ops-times.csv", "w", newline="") as f:
        f.write(f"distribution: {distribution_name}, rate: {rate}\n")
        w = csv.writer(f)
        w.writerow(["op", "thd", "dt from start (secs)"])
        for i, t in enumerate(offsets):
            w.writerow([i + 1, i % threads + 1, f"{t:.6f}"])


def write_metrics(out: Path, registry: CollectorRegistry) -> None:
    """The run's histograms and counters in the Prometheus text format (`driver.metrics`)."""
    (out / "driver.metrics").write_bytes(generate_latest(registry))
