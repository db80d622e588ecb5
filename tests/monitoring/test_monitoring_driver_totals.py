"""The driver's metrics reach Prometheus only as `driver.metrics`, written once when a run ends (kos.driver.output;
a textfile collector or a push exposes it): each series appears with the whole run's totals and stays
constant. A `rate()` or `increase()` over such a series is always 0 — a panel over it stays empty and an alert
never fires — so every panel and rule over `kos_driver_*` reads the totals themselves (per `runID`)."""

from __future__ import annotations

import re

from kos.testing.monitoring import Expr, dashboard_exprs, dashboard_files, metric_names, rule_exprs

RANGE_FUNCTION = re.compile(r"\b(?:rate|irate|increase|delta|idelta|deriv)\s*\(")


def _over_driver_rates(exprs: list[Expr]) -> list[str]:
    return [f"{e.where}: {e.expr}" for e in exprs
            if any(n.startswith("kos_driver_") for n in metric_names(e.expr)) and RANGE_FUNCTION.search(e.expr)]  # fmt: skip


def test_no_panel_or_rule_takes_a_rate_of_the_drivers_once_written_totals() -> None:
    exprs = [e for p in dashboard_files() for e in dashboard_exprs(p)] + rule_exprs()
    assert any(n.startswith("kos_driver_") for e in exprs for n in metric_names(e.expr))
    assert _over_driver_rates(exprs) == []


def test_the_check_finds_a_rate_over_driver_totals() -> None:
    e = Expr(
        "x", "histogram_quantile(0.99, sum by (le) (rate(kos_driver_attachment_create_latency_seconds_bucket[5m])))"
    )
    assert _over_driver_rates([e]) == [f"x: {e.expr}"]
