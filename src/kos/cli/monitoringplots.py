"""`kos demo --monitoring`: plots drawn from Prometheus queries over the driver's run, added to its report.

Three views the driver cannot draw from its own records, because they are the servers' side of the run:
the apiserver's request rate by verb, the watch events it sent (with what the simulated nodes received), and
IPAM's latency (its queue's wait and work per attachment, and the IPLock create's 99th percentile — whose
buckets, the original's, start at 125 ms, so a fast cluster shows it pinned just below that bound). Each is a `query_range` over
the run at the scrape interval (kos.cli.monitoring.SCRAPE_INTERVAL), drawn as the report's own plots are
(matplotlib, PNG) into the run directory, and linked from report.html under "From Prometheus".
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import ssl
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from kos.cli.monitoringapi import PrometheusAPI
from kos.util.clock import Clock

STEP = 2.0
"""Seconds between the points of each plot: the scrape interval."""
WINDOW = "10s"
"""The rate() window: five scrapes."""
BEFORE = 10.0
"""Seconds before the run each plot starts at, to show the idle cluster it started from."""
SCRAPE_WAIT = 30.0
"""Seconds Prometheus has to scrape every process once more after the run, so the plots reach its end."""
POLL = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class Plot:
    """One plot: its file, title, y label and (legend format with {label} fields, PromQL) lines."""

    file: str
    title: str
    ylabel: str
    lines: tuple[tuple[str, str], ...]
    log: bool = False
    """A logarithmic y axis."""


def _mean(histogram: str, selector: str) -> str:
    """PromQL: the mean of `histogram`'s observations over WINDOW."""
    return (f"sum(rate({histogram}_sum{{{selector}}}[{WINDOW}])) / "
            f"sum(rate({histogram}_count{{{selector}}}[{WINDOW}]))")  # fmt: skip


PLOTS = (
    Plot("prometheus-apiserver-requests.png", "apiserver requests per second, by verb", "requests/s",
         (("{verb}", f"sum by (verb) (rate(apiserver_request_total[{WINDOW}]))"),)),
    Plot("prometheus-watch-events.png", "Watch events per second", "events/s",
         (("sent: {resource} (counted as each watch ends)",
           f"sum by (resource) (rate(apiserver_watch_events_total[{WINDOW}]))"),
          ("received by the simulated nodes", f"sum(rate(kos_simnodes_watch_events_received[{WINDOW}]))"))),
    Plot("prometheus-ipam-latency.png", "IPAM latency", "seconds (log scale)",
         (("queue wait, mean", _mean("kos_workqueue_queue_duration_seconds", 'name="ipam"')),
          ("work per attachment, mean", _mean("kos_workqueue_work_duration_seconds", 'name="ipam"')),
          ("IPLock create p99 (the original's buckets: first bound 125 ms)",
           "histogram_quantile(0.99, sum by (le) "
           f'(rate(kos_ipam_ip_lock_latency_seconds_bucket{{op="create"}}[{WINDOW}])))')), log=True),
)  # fmt: skip


async def wait_scraped(api: PrometheusAPI, after: float, clock: Clock) -> bool:
    """Whether every target was scraped after `after` (epoch seconds) within SCRAPE_WAIT of it (polled on
    `clock`)."""
    deadline = clock.monotonic() + max(0.0, after - time.time()) + SCRAPE_WAIT
    while clock.monotonic() < deadline:
        try:
            targets = await asyncio.to_thread(api.targets)
        except (OSError, RuntimeError):
            targets = []
        if targets and all(_epoch(t["lastScrape"]) > after for t in targets):
            return True
        await clock.sleep(POLL)
    return False


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


async def baseline(url: str, context: ssl.SSLContext | None, clock: Clock) -> bool:
    """Wait until Prometheus at `url` has scraped every process for WINDOW, so the plots start with the idle
    cluster (a rate needs two scrapes); whether it did within SCRAPE_WAIT."""
    window = float(WINDOW.removesuffix("s"))
    return await wait_scraped(PrometheusAPI(url, context), time.time() + window, clock)


async def add_to_report(url: str, context: ssl.SSLContext | None, report: Path, start: float, end: float,
                        clock: Clock) -> list[str]:  # fmt: skip
    """Draw PLOTS over [`start`, `end`] (epoch seconds) from Prometheus at `url` into `report`'s directory and
    link them from `report` (report.html). Returns what went wrong (empty: every plot drawn, each with data)."""
    api = PrometheusAPI(url, context)
    problems = (
        []
        if await wait_scraped(api, end, clock)
        else [f"Prometheus did not scrape every process in {SCRAPE_WAIT:.0f}s"]
    )
    drawn = []
    for plot in PLOTS:
        try:
            series = [(legend, await asyncio.to_thread(api.query_range, expr, start - BEFORE, end + STEP, STEP))
                      for legend, expr in plot.lines]  # fmt: skip
        except (OSError, RuntimeError) as e:
            problems.append(f"{plot.file}: {e}")
            continue
        if not any(s["values"] for _, result in series for s in result):
            problems.append(f"{plot.file}: Prometheus has no data for it over the run")
        draw(report.parent / plot.file, plot, series, start)
        drawn.append(plot)
    if drawn:
        section = "<h2>From Prometheus</h2>\n" + "".join(
            f'<h3>{html.escape(p.title)}</h3><img src="{p.file}" alt="{html.escape(p.title)}">\n' for p in drawn
        )
        page = report.read_text()
        report.write_text(page.replace("</body>", section + "</body>", 1) if "</body>" in page else page + section)
    return problems


def draw(path: Path, plot: Plot, series: list[tuple[str, list[dict[str, Any]]]], start: float) -> None:
    """One PNG: every series of every line of `plot` (query_range results), time in seconds from `start`."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for legend, result in series:
        for s in result:
            xs = [float(t) - start for t, _ in s["values"]]
            ys = [float(v) for _, v in s["values"]]
            ax.plot(xs, ys, ".-", label=legend.format_map(_Labels(s["metric"])))
    ax.axvline(0, color="grey", linewidth=0.8)
    if plot.log:
        ax.set_yscale("log")
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel(plot.ylabel)
    ax.set_title(plot.title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class _Labels(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""
