"""Every metric deploy/monitoring's dashboards and alert rules use is exported by a running kos: `kos up --ha
--monitoring` (3 etcd members, 2 apiservers, 2 controller managers, the simulated nodes) starts a real Prometheus
that scrapes every process cluster.json lists; after a short driver run, a query for each panel's and each
rule's metrics returns data, every panel's expression evaluates, and the alert rules (which Prometheus loads
from deploy/monitoring) are healthy and quiet. The driver serves no /metrics (it writes
driver.metrics when its run ends, docs/metrics.md), so the driver dashboard's metrics are looked up in the file
that run wrote (the ping tests' metrics, which need the OVS fabric, among the names the driver declares).
The test prints the list: each dashboard, each metric, where it was found."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kos.driver.metrics import DriverMetrics
from kos.testing.monitoring import (
    PrometheusAPI,
    dashboard_exprs,
    dashboard_files,
    metric_names,
    rule_exprs,
)
from kos.testing.up import UpProcess

pytestmark = [
    pytest.mark.system,
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="prometheus is not installed (Debian: apt-get install prometheus)"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (Debian: etcd-server)"),
]  # fmt: skip

NODES = 3
PING_TEST_METRICS = frozenset({"kos_driver_attachment_create_to_tested_latency_seconds_bucket",
                               "kos_driver_attachment_create_to_half_tested_latency_seconds_bucket",
                               "kos_driver_test_count_total"})  # fmt: skip
"""Observed only when the driver runs ping tests, which need the OVS fabric (`kos demo --fabric ovs`), not the
simulated nodes: checked against the names the driver declares."""
SCRAPE_DEADLINE = 90.0
"""Seconds Prometheus has to scrape every process after the driver run (scrapes every 5 s)."""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, str, subprocess.Popen[str]]]:
    """A running `kos up --ha --monitoring`: (state dir, Prometheus' URL, the process)."""
    state = tmp_path / "state"
    up = UpProcess(state, "--ha", "--monitoring", "--nodes", str(NODES))
    try:
        urls = [ln.split()[1] for ln in up.lines if ln.strip().startswith("prometheus ")]
        if not urls:
            pytest.fail("kos up --monitoring printed no Prometheus URL:\n" + "".join(up.lines))
        yield state, urls[0], up.proc
    finally:
        up.stop(check=False)


def _wait_scraped(api: PrometheusAPI, metrics_urls: set[str], after: float) -> None:
    """Until every URL in `metrics_urls` (and no other) is a healthy target last scraped after `after` (epoch)."""
    deadline = time.monotonic() + SCRAPE_DEADLINE
    while True:
        targets = api.targets()
        urls = {t["scrapeUrl"] for t in targets}
        fresh = all(t["health"] == "up" and _epoch(t["lastScrape"]) > after for t in targets)
        if urls == metrics_urls and fresh:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus targets {json.dumps(targets, indent=1)[:3000]}\nexpected {sorted(metrics_urls)}")
        time.sleep(0.5)  # a poll with a deadline: Prometheus scrapes on its own schedule


def _declared_driver_samples() -> set[str]:
    """The sample names of every metric kos.driver.metrics declares, each with one child."""
    registry = CollectorRegistry()
    m = DriverMetrics(registry, "r")
    for v in vars(m).values():
        if hasattr(v, "labels"):
            v.labels(*["r"] * len(v._labelnames))
    return {s.name for fam in text_string_to_metric_families(generate_latest(registry).decode()) for s in fam.samples}


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_every_dashboard_and_rule_metric_is_in_a_live_scrape(
    cluster: tuple[Path, str, subprocess.Popen[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url, up = cluster
    doc = json.loads((state / "cluster.json").read_text())
    components = doc["components"]
    assert {c["role"] for c in components} == {"etcd", "apiserver", "controller-manager", "simnodes", "prometheus"}
    prometheus = next(c for c in components if c["role"] == "prometheus")
    assert prometheus["url"] == url and prometheus["pid"] is not None and _alive(prometheus["pid"])

    out = tmp_path / "run"
    driver = subprocess.run(
        [sys.executable, "-m", "kos", "driver", "--kubeconfig", doc["kubeconfig"], "--nodes", f"node-:{NODES}",
         "--num-attachments", "40", "--rate", "40", "--num-nets", "4", "--top-net-size", "8",
         "--output", str(out), "--progress", "none"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert driver.returncode == 0, driver.stdout + driver.stderr
    finished = time.time()

    api = PrometheusAPI(url, ssl.create_default_context(cafile=str(state / "pki" / "ca.crt")))
    _wait_scraped(api, {c["metrics_url"] for c in components if c["metrics_url"]}, finished)
    jobs = {t["labels"]["job"] for t in api.targets()}
    assert jobs == {"kos-etcd", "kos-apiserver", "kos-controller-manager", "kos-simnodes", "kos-prometheus"}
    # deploy/monitoring's alert rules, evaluated on the live data: every one healthy, none firing
    rules = [r for g in api.get("/api/v1/rules")["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} == {e.where.removeprefix("rule ") for e in rule_exprs()}
    assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []
    assert [r["name"] for r in rules if r["state"] == "firing"] == []
    labels = api.get("/api/v1/labels")
    assert not [n for n in labels if n.startswith("exported_")], "a target label renamed a metric's own label"

    driver_file = out / "driver.metrics"
    driver_samples = {s.name for fam in text_string_to_metric_families(driver_file.read_text()) for s in fam.samples}

    report: list[str] = []
    missing: list[str] = []
    failing: list[str] = []
    sources = [(p.name, dashboard_exprs(p)) for p in dashboard_files()] + [("kos-alerts.yaml", rule_exprs())]
    for source, exprs in sources:
        report.append(f"{source}:")
        seen: list[str] = []
        for e in exprs:
            try:
                api.query(e.expr)  # every panel's and rule's expression evaluates on the live data
            except RuntimeError as err:
                failing.append(f"{e.where}: {err}")
            for name in metric_names(e.expr):
                if name in seen:
                    continue
                seen.append(name)
                if name in PING_TEST_METRICS:
                    found = name in driver_samples or name in _declared_driver_samples()
                    where = "declared by kos.driver.metrics (observed with ping tests: the OVS fabric)"
                elif name.startswith("kos_driver_"):
                    found = name in driver_samples
                    where = f"{driver_file.name} (the driver serves no /metrics)"
                else:
                    result = api.query(f"count by (job) ({name})")
                    found = bool(result)
                    where = "live scrape, job " + ", ".join(sorted(r["metric"].get("job", "?") for r in result))
                report.append(f"  {name:75} {where if found else 'NOT FOUND'}")
                if not found:
                    missing.append(f"{source}: {name}")
    with capsys.disabled():  # the list is this test's artefact: shown in `make test`'s output too
        print("\nmetrics each dashboard and the alert rules use, and where each was found:\n" + "\n".join(report))
    assert not failing, failing
    assert not missing, missing

    pid = prometheus["pid"]
    up.send_signal(signal.SIGINT)
    assert up.wait(60) == 0
    assert not _alive(pid), "kos up stopped its Prometheus"
    assert not (state / "cluster.json").exists()
    assert os.path.isdir(state / "prometheus" / "data")
