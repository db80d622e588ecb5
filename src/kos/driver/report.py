"""The run's report: summary JSON, a per-NA CSV, and an HTML page of plots (matplotlib, PNG).

Plots: latency CDFs (create, create→addressed, create→ready, addressed→implemented),
latency over the run, and throughput over the run (creates, deletes and NAs
becoming ready per second); with ping tests (`--test-fraction`), the tested-latency
histograms too (create→tested and ready→tested of full and half tests: the
distributions of the driver's `kos_driver_attachment_*tested_latency_seconds`).
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from kos.driver.records import Record

TESTED_ROWS = (("create_to_tested", "create → tested (full ping tests)"), ("ready_to_tested", "ready → tested"),
               ("create_to_half_tested", "create → half-tested"))  # fmt: skip
"""The summary's ping-test stages (kos.driver.summary.latencies), in the table when there were tests."""

STAGES: tuple[tuple[str, str, Callable[[Record], float]], ...] = (
    ("create", "create call", lambda r: r.create_latency),
    ("create_to_addressed", "create → addressed", lambda r: r.addressed - r.t_create),
    ("create_to_ready", "create → ready", lambda r: r.ready - r.t_create),
    ("addressed_to_implemented", "addressed → implemented (server stamps)", lambda r: r.server_impl - r.server_address),
)


def write_records(path: Path, records: list[Record], t0_wall: float) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "vni", "subnet", "node", "thread", "created_s", "create_latency_s", "to_addressed_s",
                    "to_ready_s", "to_broken_s", "to_tested_s", "test_exit", "deleted_s", "ipv4", "failed"])  # fmt: skip
        for r in records:

            def rel(t: float, start: float = r.t_create) -> str:
                return "" if math.isnan(t) else f"{t - start:.6f}"

            w.writerow([r.name, r.vni, r.subnet, r.node, r.thread, f"{r.t_create - t0_wall:.6f}",
                        "" if math.isnan(r.create_latency) else f"{r.create_latency:.6f}", rel(r.addressed),
                        rel(r.ready), rel(r.broken), rel(r.tested), "" if r.test_exit is None else r.test_exit,
                        "" if math.isnan(r.deleted) else f"{r.deleted - t0_wall:.6f}", r.ipv4, r.failed])  # fmt: skip


def _finite(values: list[float]) -> list[float]:
    return sorted(v for v in values if not math.isnan(v))


def plot_cdfs(path: Path, records: list[Record]) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for _, label, get in STAGES:
        v = _finite([get(r) for r in records if not r.failed])
        if v:
            ax.plot([x * 1000 for x in v], [(i + 1) / len(v) for i in range(len(v))], label=f"{label} (n={len(v)})")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of NAs")
    ax.set_title("Latency CDFs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_over_time(path: Path, records: list[Record], t0_wall: float) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for _, label, get in STAGES[1:3]:
        pts = [(r.t_create - t0_wall, get(r) * 1000) for r in records if not r.failed and not math.isnan(get(r))]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=4, label=label, alpha=0.6)
    ax.set_xlabel("seconds since the start of the run (by create time)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Latency over the run")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_throughput(path: Path, records: list[Record], t0_wall: float) -> None:
    def per_second(times: list[float]) -> tuple[list[int], list[int]]:
        if not times:
            return [], []
        n = int(max(times)) + 1
        counts = [0] * n
        for t in times:
            if t >= 0:
                counts[int(t)] += 1
        return list(range(n)), counts

    fig, ax = plt.subplots(figsize=(8, 5))
    series = (
        ("creates", [r.t_create - t0_wall for r in records if not r.failed]),
        ("deletes", [r.deleted - t0_wall for r in records if not math.isnan(r.deleted)]),
        ("became ready", [r.ready - t0_wall for r in records if not math.isnan(r.ready)]),
    )
    for label, times in series:
        xs, ys = per_second(times)
        if xs:  # one more point so that the last second's step is drawn
            ax.plot([*xs, xs[-1] + 1], [*ys, ys[-1]], label=label, drawstyle="steps-post")
    ax.set_xlabel("seconds since the start of the run")
    ax.set_ylabel("per second")
    ax.set_title("Throughput over the run")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


TESTED: tuple[tuple[str, bool, Callable[[Record], float]], ...] = (
    ("create → tested (full tests)", True, lambda r: r.tested - r.t_create),
    ("ready → tested (full tests)", True, lambda r: r.tested - r.ready),
    ("create → half-tested", False, lambda r: r.tested - r.t_create),
    ("ready → half-tested", False, lambda r: r.tested - r.ready),
)
"""The tested-latency histograms: label, whether of full tests, the latency (seconds) of a tested NA."""


def tested_latencies(records: list[Record]) -> dict[str, list[float]]:
    """Each TESTED histogram's latencies (seconds, ascending) over the NAs tested after becoming ready."""
    tested = [r for r in records if not r.failed and not math.isnan(r.tested) and not math.isnan(r.ready)]
    return {label: _finite([get(r) for r in tested if r.full_test == full]) for label, full, get in TESTED}


def plot_tested(path: Path, records: list[Record]) -> bool:
    """The tested-latency histograms (log-spaced bins, ms) into `path`; False (nothing drawn) without tests."""
    series = {label: v for label, v in tested_latencies(records).items() if v}
    if not series:
        return False
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.2 * len(series) + 0.6), squeeze=False)
    lo = max(1e-4, min(v[0] for v in series.values()))
    hi = max(lo * 10, *(v[-1] for v in series.values()))
    bins = [lo * (hi / lo) ** (i / 40) * 1000 for i in range(41)]
    for ax, (label, v) in zip(axes[:, 0], series.items(), strict=True):
        ax.hist([max(x, lo) * 1000 for x in v], bins=bins)
        ax.set_xscale("log")
        ax.set_title(f"{label} (n={len(v)})", fontsize="medium")
        ax.set_ylabel("NAs")
        ax.grid(True, which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("latency (ms, log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v * 1000:.1f} ms" if v < 10 else f"{v:.2f} s"


def write_report(out: Path, summary: dict[str, Any], records: list[Record], t0_wall: float) -> Path:
    """Write summary.json, attachments.csv, the plots and report.html into `out`; the report's path."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    write_records(out / "attachments.csv", records, t0_wall)
    plot_cdfs(out / "latency-cdf.png", records)
    plot_over_time(out / "latency-over-time.png", records, t0_wall)
    plot_throughput(out / "throughput.png", records, t0_wall)
    tested = ""
    if plot_tested(out / "tested-latency.png", records):
        t = summary.get("tests") or {}
        tested = (f"<h2>Ping tests: tested-latency histograms</h2><p>{t.get('full', 0)} full tests "
                  f"({t.get('full_passed', 0)} passed), {t.get('half', 0)} half ({t.get('half_passed', 0)} passed)"
                  '.</p><img src="tested-latency.png" alt="tested-latency histograms">\n')  # fmt: skip
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(f"<td>{_fmt(summary['latency_seconds'][key].get(q))}</td>" for q in ("p50", "p90", "p99", "max"))
        + "</tr>"
        for key, label in [(k, lb) for k, lb, _ in STAGES]
        + [(k, lb) for k, lb in TESTED_ROWS if summary["latency_seconds"].get(k, {}).get("count")]
    )
    s = summary
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>kos run {html.escape(s["run_id"])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .7em;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>kos driver run {html.escape(s["run_id"])}</h1>
<p>{s["created"]} NAs created and {s["deleted"]} deleted in {s["elapsed_seconds"]:.1f} s:
{s["achieved_rate"]:.1f} operations/s (target {s["target_rate"]}), {s["achieved_create_rate"]:.1f} creates/s;
{s["ready"]} became ready, {s["never_ready"]} never did, {s["failed_creates"]} creates failed.
{s["plan"]["networks"]} virtual networks, {s["plan"]["slots"]} slots, avgPeers {s["plan"]["avg_peers"]:.2f}.
{("<b>Stopped early: " + html.escape(s["stopped"]) + "</b>") if s["stopped"] else ""}</p>
<table><tr><th>stage</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>{rows}</table>
<h2>Latency CDFs</h2><img src="latency-cdf.png" alt="latency CDFs">
<h2>Latency over the run</h2><img src="latency-over-time.png" alt="latency over time">
<h2>Throughput over the run</h2><img src="throughput.png" alt="throughput over time">
{tested}<p>Files: summary.json, attachments.csv, driver.metrics, size-distribution.csv,
size-distribution-outline.csv, attachments-ops-times.csv.</p></body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
