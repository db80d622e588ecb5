"""deploy/monitoring checked offline on every `make test`: promtool passes the alert rules, their unit tests and
both Prometheus configurations (the in-cluster one, and the one `kos up --monitoring` generates); every
dashboard and rule expression parses (promtool); the dashboards are well-formed Grafana JSON over metrics
docs/metrics.md documents; and `kubectl kustomize deploy/monitoring` renders them, the configuration and the
rules into ConfigMaps byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kos.cli import monitoring
from kos.pki import directory
from kos.pki.authority import issue_client, new_ca
from kos.testing.monitoring import (
    CLUSTER_CONFIG,
    DASHBOARDS,
    MONITORING,
    RULE_TESTS,
    RULES,
    dashboard_exprs,
    dashboard_files,
    metric_names,
    rule_exprs,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD_NAMES = {"kos-apiserver", "kos-controllers", "kos-agents", "kos-driver", "kos-etcd"}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian: apt-get install prometheus)"
)


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


@needs_promtool
def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = _promtool("check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in check.stdout
    tests = _promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout


@needs_promtool
def test_every_alert_has_a_unit_test() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    tested = {t["alertname"] for case in doc["tests"] for t in case.get("alert_rule_test", [])}
    firing = {t["alertname"] for case in doc["tests"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    alerts = {e.where.removeprefix("rule ") for e in rule_exprs()}
    assert alerts == tested
    assert alerts == firing, "every alert is shown firing in a test"


@needs_promtool
def test_every_dashboard_and_rule_expression_parses(tmp_path: Path) -> None:
    """promtool parses each expression as a recording rule's (it parses and type-checks the PromQL)."""
    exprs = [e for p in dashboard_files() for e in dashboard_exprs(p)] + rule_exprs()
    rules = {"groups": [{"name": "parse", "rules": [{"record": f"kos:parse:{i}", "expr": e.expr}
                                                     for i, e in enumerate(exprs)]}]}  # fmt: skip
    f = tmp_path / "parse.yaml"
    f.write_text(yaml.safe_dump(rules))
    r = _promtool("check", "rules", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.yaml"  # the check can fail
    bad.write_text(yaml.safe_dump({"groups": [{"name": "p", "rules": [{"record": "x", "expr": "sum by (le (x)"}]}]}))
    assert _promtool("check", "rules", str(bad)).returncode != 0


def _without_kubernetes_sd(config: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`config` with each job's kubernetes_sd_configs replaced by an empty static list, and the blocks taken out."""
    blocks = []
    for job in config["scrape_configs"]:
        sd = job.pop("kubernetes_sd_configs", None)
        if sd is not None:
            blocks += sd
            job["static_configs"] = [{"targets": []}]
    return config, blocks


@needs_promtool
def test_the_in_cluster_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """Debian's Prometheus is built without Kubernetes service discovery (its promtool refuses the field): there,
    the kubernetes_sd_configs blocks are checked against the documented fields and the rest by promtool."""
    config = yaml.safe_load(CLUSTER_CONFIG.read_text())
    # the files the pod mounts, so promtool's checks that they exist pass
    root = tmp_path / "etc"
    text = CLUSTER_CONFIG.read_text()
    for path in {*_paths(config)}:
        f = root / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
        text = text.replace(path, str(f))
    rules = root / "etc/prometheus/config/kos-alerts.yaml"
    rules.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(RULES, rules)
    local = tmp_path / "prometheus.yml"
    local.write_text(text.replace("/etc/prometheus/config/kos-alerts.yaml", str(rules)))
    r = _promtool("check", "config", str(local))
    if r.returncode != 0 and "field kubernetes_sd_configs not found" in r.stdout + r.stderr:
        stripped, blocks = _without_kubernetes_sd(yaml.safe_load(local.read_text()))
        for sd in blocks:
            assert set(sd) <= {"role", "namespaces", "selectors", "api_server", "kubeconfig_file"}, sd
            assert sd["role"] in {"node", "pod", "service", "endpoints", "endpointslice", "ingress"}, sd
        local.write_text(yaml.safe_dump(stripped))
        r = _promtool("check", "config", str(local))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr
    jobs = [j["job_name"] for j in config["scrape_configs"]]
    assert {"kubernetes-apiservers", "kubernetes-etcd", "kubernetes-service-endpoints", "kubernetes-pods",
            "kos-etcd"} <= set(jobs)  # fmt: skip
    annotations = json.dumps(config)
    for a in ("prometheus_io_scrape", "prometheus_io_sample", "prometheus_io_port", "prometheus_io_scheme"):
        assert a in annotations


def _paths(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in ([v] if k.endswith("_file") else _paths(v))]
    if isinstance(node, list):
        return [p for v in node for p in _paths(v)]
    return []


@needs_promtool
def test_the_config_kos_up_generates_passes_promtool(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = new_ca("test-ca")
    directory.write(pki, directory.CA, ca)
    directory.write(pki, "client", issue_client(ca, monitoring.USER, ["system:monitoring"]))
    crt, key = directory.paths(pki, "client")
    tls = monitoring.ScrapeTLS(pki / "ca.crt", crt, key, pki / "ca.crt", crt, key)
    components = [
        monitoring.Target("etcd-0", "etcd", "https://127.0.0.1:2379/metrics"),
        monitoring.Target("apiserver-0", "apiserver", "https://127.0.0.1:8080/metrics"),
        monitoring.Target("apiserver-1", "apiserver", "https://127.0.0.1:8081/metrics"),
        monitoring.Target("controller-manager", "controller-manager", "https://127.0.0.1:9295/metrics"),
        monitoring.Target("simnodes", "simnodes", "https://127.0.0.1:9000/metrics"),
        monitoring.Target("quiet", "agent", None),
    ]  # fmt: skip
    config = monitoring.scrape_config(components, tls, RULES)
    f = tmp_path / "prometheus.yml"
    f.write_text(yaml.safe_dump(config))
    r = _promtool("check", "config", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert list(jobs) == ["kos-etcd", "kos-apiserver", "kos-controller-manager", "kos-simnodes"]
    assert config["rule_files"] == [str(RULES)] and monitoring.RULES == RULES
    assert [s["labels"]["process"] for s in jobs["kos-apiserver"]["static_configs"]] == ["apiserver-0", "apiserver-1"]
    assert jobs["kos-controller-manager"]["static_configs"][0]["targets"] == ["127.0.0.1:9295"]
    assert all(j["scheme"] == "https" and j["tls_config"]["cert_file"] == str(crt.resolve()) for j in jobs.values())
    plain = monitoring.scrape_config([monitoring.Target("a", "apiserver", "http://127.0.0.1:1/metrics")],
                                     None)  # fmt: skip
    assert "tls_config" not in plain["scrape_configs"][0]


def test_dashboards_are_grafana_json_with_a_description_for_every_panel() -> None:
    files = dashboard_files()
    assert {p.stem for p in files} == DASHBOARD_NAMES
    uids = set()
    for p in files:
        doc = json.loads(p.read_text())
        assert doc["uid"] == p.stem and doc["uid"] not in uids
        uids.add(doc["uid"])
        assert [v["name"] for v in doc["templating"]["list"]] == ["datasource"]
        panels = [x for x in doc["panels"] if x["type"] != "row"]
        assert panels, p
        ids = [x["id"] for x in doc["panels"]]
        assert len(ids) == len(set(ids)), f"{p.name}: panel ids repeat"
        for panel in panels:
            assert panel["description"].strip(), f"{p.name}: {panel['title']} has no description"
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], f"{p.name}: {panel['title']} has no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs))


def test_every_metric_the_dashboards_and_rules_use_is_documented() -> None:
    """kos's own metric names (every non-etcd one) are in docs/metrics.md, by their declared name."""
    documented = (DOCS / "metrics.md").read_text()
    exprs = [e for p in dashboard_files() for e in dashboard_exprs(p)] + rule_exprs()
    missing = set()
    for e in exprs:
        for name in metric_names(e.expr):
            if name.startswith(("etcd_", "grpc_", "process_")):
                continue
            base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
            if f"`{base}`" not in documented and f"`{base.removesuffix('_total')}`" not in documented:
                missing.add(name)
    assert not missing, sorted(missing)


def test_metric_names_are_read_out_of_promql() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, op) (rate(a_bucket{err!="ok", x=~"a|b"}[5m]))) '
            '/ on() group_left scalar(max(b)) > 1e3 or vector(0) unless c')  # fmt: skip
    assert metric_names(expr) == ["a_bucket", "b", "c"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_the_dashboards_config_and_rules_into_configmaps() -> None:
    r = subprocess.run(
        ["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    objects = [o for o in yaml.safe_load_all(r.stdout) if o]
    cms = {o["metadata"]["name"].rsplit("-", 1)[0]: o for o in objects if o["kind"] == "ConfigMap"}
    for p in DASHBOARDS.glob("*.json"):
        assert cms["kos-grafana-dashboards"]["data"][p.name] == p.read_text()
    assert cms["kos-prometheus-config"]["data"]["prometheus.yml"] == CLUSTER_CONFIG.read_text()
    assert cms["kos-prometheus-config"]["data"]["kos-alerts.yaml"] == RULES.read_text()
    generated = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    mounted = {v["configMap"]["name"] for o in objects if o["kind"] == "Deployment"
               for v in o["spec"]["template"]["spec"]["volumes"] if "configMap" in v}  # fmt: skip
    assert mounted == generated, "each Deployment mounts the generated (hash-suffixed) ConfigMaps"
    for o in objects:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"]["namespace"] == "example-com", o["metadata"]["name"]
    rule_file = yaml.safe_load(CLUSTER_CONFIG.read_text())["rule_files"][0]
    prom = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "kos-prometheus")
    mount = next(m for m in prom["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] if m["name"] == "config")
    assert rule_file == f"{mount['mountPath']}/{RULES.name}", "the config names the rules where the pod has them"


def test_docs_name_every_dashboard_panel_and_alert() -> None:
    text = (DOCS / "monitoring.md").read_text()
    for p in dashboard_files():
        doc = json.loads(p.read_text())
        assert p.name in text
        for panel in doc["panels"]:
            assert f"| {panel['title']} |" in text or f"**{panel['title']}**" in text, f"{p.name}: {panel['title']}"
    for e in rule_exprs():
        assert f"`{e.where.removeprefix('rule ')}`" in text


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_prometheus_and_grafana_run_unprivileged_on_base_nodes() -> None:
    """As the original placed them (role.kos.example.com/base=true); non-root, read-only root, no capabilities;
    only Prometheus holds a Kubernetes token, and its ClusterRole only reads."""
    r = subprocess.run(
        ["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    objects = [o for o in yaml.safe_load_all(r.stdout) if o]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert set(deployments) == {"kos-prometheus", "kos-grafana"}
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"role.kos.example.com/base": "true"}
        assert pod["automountServiceAccountToken"] is (name == "kos-prometheus")
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert (sc["allowPrivilegeEscalation"], sc["readOnlyRootFilesystem"], sc["capabilities"]["drop"]) == (
                False, True, ["ALL"]), name  # fmt: skip
            tag = c["image"].rsplit(":", 1)[1]
            assert tag[0] in "v0123456789", f"{c['image']}: a pinned version"
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert {v for rule in role["rules"] for v in rule["verbs"]} <= {"get", "list", "watch"}
    # nodes/proxy reaches the kubelet's exec and run endpoints; cAdvisor needs only nodes/metrics
    assert "nodes/proxy" not in {r for rule in role["rules"] for r in rule.get("resources", [])}
    assert not [o for o in objects if o["kind"] == "Secret"], "no secret material is rendered"
