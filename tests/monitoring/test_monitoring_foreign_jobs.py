"""The in-cluster Prometheus (deploy/monitoring/prometheus/prometheus.yml) also scrapes the cluster's own
kube-apiserver (job `kubernetes-apiservers`) and its etcd (job `kubernetes-etcd`), which export the same metric
names as kos's apiserver (`apiserver_request_total`, ...) and kos's etcd members (`etcd_*`). A dashboard panel
or alert that selects such a metric by name alone mixes the cluster's series into kos's: a 5xx of the
kube-apiserver fires KosApiserverErrors, the main etcd's revision becomes the "watch cache lag behind etcd".
So every selector of those names carries a job matcher: `job="kos-etcd"` for etcd (the job's name in the
cluster and in `kos up --monitoring` alike), `job!="kubernetes-apiservers"` for the apiserver's."""

from __future__ import annotations

import re

import pytest
import yaml

from kos.testing.monitoring import CLUSTER_CONFIG, Expr, dashboard_exprs, dashboard_files, metric_names, rule_exprs

# metric name prefix → the matcher each of its selectors must hold, and the foreign job it keeps out
GUARDED = {
    "etcd_": ('job="kos-etcd"', "kubernetes-etcd"),
    "apiserver_": ('job!="kubernetes-apiservers"', "kubernetes-apiservers"),
}


def _selectors(expr: str, name: str) -> list[str]:
    """The label matchers (the text between braces, '' for none) of every selector of `name` in `expr`."""
    return [
        m.group(1) or ""
        for m in re.finditer(rf"(?<![A-Za-z0-9_:]){re.escape(name)}(?![A-Za-z0-9_:])(?:\{{([^{{}}]*)\}})?", expr)
    ]


def _unguarded(exprs: list[Expr]) -> list[str]:
    bad = []
    for e in exprs:
        for name in metric_names(e.expr):
            for prefix, (matcher, _) in GUARDED.items():
                if name.startswith(prefix) and any(matcher not in s for s in _selectors(e.expr, name)):
                    bad.append(f"{e.where}: {name} without {matcher}")
    return bad


def test_the_cluster_config_scrapes_the_foreign_jobs_the_guards_keep_out() -> None:
    jobs = {j["job_name"] for j in yaml.safe_load(CLUSTER_CONFIG.read_text())["scrape_configs"]}
    assert {foreign for _, foreign in GUARDED.values()} <= jobs
    assert "kos-etcd" in jobs


@pytest.mark.parametrize("source", ["dashboards", "rules"])
def test_no_panel_or_rule_mixes_the_clusters_apiserver_or_etcd_into_koss(source: str) -> None:
    exprs = [e for p in dashboard_files() for e in dashboard_exprs(p)] if source == "dashboards" else rule_exprs()
    assert any(n.startswith(tuple(GUARDED)) for e in exprs for n in metric_names(e.expr))
    assert _unguarded(exprs) == []


def test_the_check_finds_an_unguarded_selector() -> None:
    e = [Expr("x", 'sum(rate(apiserver_request_total{code=~"5.."}[5m])) / etcd_server_has_leader{job="kos-etcd"}')]
    assert _unguarded(e) == ['x: apiserver_request_total without job!="kubernetes-apiservers"']
