"""The run's summary (summary.json, the CLI's table): counts, rates and stage-latency quantiles.

Pure functions of the `Record`s and the schedule loop's counters, so a known set of observations
gives a known summary. Quantiles use the nearest-rank method; NaN (a stage never seen) is left out
of a stage's statistics. Latencies are in seconds.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from kos.driver import distribution
from kos.driver.records import Record
from kos.driver.settings import DriverSettings

MAX_NAMES = 50
"""NAs named at most per list in the summary."""


@dataclasses.dataclass(frozen=True, slots=True)
class Counts:
    """What the schedule loop counted over a run of `elapsed` seconds."""

    creates: int
    deletes: int
    failed_creates: int
    ops_done: int
    late_ops: int
    total_delay: float
    """Seconds, summed over late operations."""
    elapsed: float
    """Seconds from the start of the schedule to the end of the run."""
    stopped: str = ""


def quantile(sorted_values: list[float], q: float) -> float:
    """The q-quantile of a non-empty ascending list by the nearest-rank method."""
    i = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def stats(values: list[float]) -> dict[str, float | None]:
    """p50, p90, p99, max and count of the values that are not NaN (None for each when there are none)."""
    v = sorted(x for x in values if not math.isnan(x))
    if not v:
        return {"p50": None, "p90": None, "p99": None, "max": None, "count": 0}
    return {"p50": quantile(v, 0.5), "p90": quantile(v, 0.9), "p99": quantile(v, 0.99), "max": v[-1], "count": len(v)}


def latencies(done: list[Record]) -> dict[str, dict[str, float | None]]:
    """Each stage's statistics over the NAs whose create succeeded (client stages from just before the create)."""
    return {
        "create": stats([r.create_latency for r in done]),
        "create_to_addressed": stats([r.addressed - r.t_create for r in done]),
        "create_to_ready": stats([r.ready - r.t_create for r in done]),
        "addressed_to_implemented": stats([r.server_impl - r.server_address for r in done]),
        "server_create_to_addressed": stats([r.server_address - r.server_spec for r in done]),
        "server_create_to_ready": stats([r.server_impl - r.server_spec for r in done]),
        # the ping tests (--test-fraction), as the driver's tested-latency histograms observe them
        "create_to_tested": stats([r.tested - r.t_create for r in done if r.full_test and not math.isnan(r.ready)]),
        "ready_to_tested": stats([r.tested - r.ready for r in done if r.full_test]),
        "create_to_half_tested": stats(
            [r.tested - r.t_create for r in done if not r.full_test and not math.isnan(r.ready)]
        ),
    }


def summary(
    s: DriverSettings, *, run_id: str, namespace: str, plan: distribution.Plan, records: list[Record], counts: Counts
) -> dict[str, Any]:
    """The summary.json document of a run (the keys are the report's and the CLI's contract)."""
    done = [r for r in records if not r.failed]
    elapsed = max(1e-9, counts.elapsed)
    never_ready = [r.name for r in done if math.isnan(r.ready)]
    return {
        "run_id": run_id,
        "namespace": namespace,
        "settings": _settings(s),
        "plan": {
            "networks": len(plan.networks),
            "slots": plan.num_slots,
            "avg_peers": plan.avg_peers,
            "break_point": plan.break_point,
        },
        "created": counts.creates,
        "deleted": counts.deletes,
        "ready": len(done) - len(never_ready),
        "never_ready": len(never_ready),
        "never_ready_names": never_ready[:MAX_NAMES],
        "broken": sum(1 for r in done if not math.isnan(r.broken)),
        "failed_creates": counts.failed_creates,
        "elapsed_seconds": elapsed,
        "achieved_rate": (counts.creates + counts.deletes) / elapsed,
        "achieved_create_rate": counts.creates / elapsed,
        "target_rate": s.rate,
        "late_ops": counts.late_ops,
        "late_ops_percent": 100.0 * counts.late_ops / max(1, counts.ops_done),
        "total_delay_ms": counts.total_delay * 1000,
        "stopped": counts.stopped,
        "latency_seconds": latencies(done),
        "tests": test_summary(records, s.test_fraction),
    }


def test_summary(records: list[Record], test_fraction: float) -> dict[str, Any]:
    """The ping tests' outcomes (`--test-fraction`): full tests pinged a peer, half tests only set the guest up."""
    out: dict[str, Any] = {}
    for kind, full in (("full", True), ("half", False)):
        tested = [r for r in records if not r.failed and not math.isnan(r.tested) and r.full_test == full]
        out[kind] = len(tested)
        out[f"{kind}_passed"] = sum(1 for r in tested if r.test_exit == 0)
    failed = [r for r in records if not math.isnan(r.tested) and r.test_exit != 0]
    out["failed_names"] = [f"{r.name} (exit {r.test_exit})" for r in failed][:MAX_NAMES]
    out["untested_ready"] = (
        sum(1 for r in records if not math.isnan(r.ready) and math.isnan(r.tested)) if test_fraction > 0 else 0
    )
    return out


def _settings(s: DriverSettings) -> dict[str, Any]:
    """The run's settings as plain values; the client's configuration (a TLS context, a token) is no setting to
    copy into a summary."""
    plain = dataclasses.asdict(dataclasses.replace(s, client=None))
    plain.pop("client", None)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in plain.items()}
