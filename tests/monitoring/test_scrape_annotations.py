"""The contract between deploy/'s objects and deploy/monitoring's Prometheus: every object annotated
`prometheus.io/scrape` or `prometheus.io/sample` in a rendered overlay names, in `prometheus.io/port`, a port its
pods listen on for /metrics with the scheme it says. The endpoints and pod jobs scrape pod IPs, so a Service's
port annotation must be its pods' (target) port, not the Service's own. Runs on deploy/overlays/standalone
(helper D's; skipped while there is none): the aggregated overlay shares its base's annotations, and renders
only with the operator's CA file in place."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

OVERLAYS = Path(__file__).resolve().parents[2] / "deploy" / "overlays"
SCRAPE = ("prometheus.io/scrape", "prometheus.io/sample")

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def _overlays() -> list[Path]:
    standalone = OVERLAYS / "standalone"
    return [standalone] if (standalone / "kustomization.yaml").is_file() else []


def _pods(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def _metrics_listeners(pod: dict[str, Any]) -> dict[int, str]:
    """port → scheme each container serves /metrics on, read from its command line: kos's `--metrics-listen`
    (https unless `--insecure`) or `--listen` (the apiserver), etcd's `--listen-metrics-urls`."""
    out: dict[int, str] = {}
    for c in pod["spec"]["template"]["spec"]["containers"]:
        argv = [*c.get("command", []), *c.get("args", [])]
        scheme = "http" if "--insecure" in argv else "https"
        for a in argv:
            flag, _, value = a.partition("=")
            if flag in ("--metrics-listen", "--listen"):
                out[int(value.rpartition(":")[2])] = scheme
            elif flag == "--listen-metrics-urls":
                for url in value.split(","):
                    out[int(url.rpartition(":")[2])] = url.partition("://")[0]
    return out


def check(objects: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the scrape annotations of `objects` (a rendered overlay)."""
    problems = []
    for pod in _pods(objects):
        ann = pod["spec"]["template"]["metadata"].get("annotations", {})
        if not any(ann.get(a) == "true" for a in SCRAPE):
            continue
        name, listeners = pod["metadata"]["name"], _metrics_listeners(pod)
        port = int(ann.get("prometheus.io/port", "0"))
        if port not in listeners:
            problems.append(f"{pod['kind']} {name}: prometheus.io/port {port} is none of its metrics ports {listeners}")
        elif ann.get("prometheus.io/scheme", "http") != listeners[port]:
            problems.append(f"{pod['kind']} {name}: scheme {ann.get('prometheus.io/scheme', 'http')}, serves "
                            f"{listeners[port]}")  # fmt: skip
    for svc in (o for o in objects if o["kind"] == "Service"):
        ann = svc["metadata"].get("annotations", {})
        if not any(ann.get(a) == "true" for a in SCRAPE):
            continue
        selector = svc["spec"].get("selector", {})
        backing = [p for p in _pods(objects)
                   if selector.items() <= p["spec"]["template"]["metadata"].get("labels", {}).items()]  # fmt: skip
        ports = {}
        for p in backing:
            for c in p["spec"]["template"]["spec"]["containers"]:
                ports.update({cp.get("name"): cp["containerPort"] for cp in c.get("ports", [])})
        listeners = {k: v for p in backing for k, v in _metrics_listeners(p).items()}
        port = int(ann.get("prometheus.io/port", "0"))
        targets = {sp["targetPort"] if isinstance(sp.get("targetPort"), int) else ports.get(sp.get("targetPort"))
                   for sp in svc["spec"]["ports"]}  # fmt: skip
        if port not in listeners or port not in targets:
            problems.append(f"Service {svc['metadata']['name']}: prometheus.io/port {port}, but its endpoints (pod "
                            f"IPs) serve metrics on {sorted(set(listeners) & targets)}")  # fmt: skip
        elif ann.get("prometheus.io/scheme", "http") != listeners[port]:
            problems.append(f"Service {svc['metadata']['name']}: scheme {ann.get('prometheus.io/scheme', 'http')}, "
                            f"serves {listeners[port]}")  # fmt: skip
    return problems


@pytest.mark.parametrize("overlay", _overlays() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no deploy/overlays yet (helper D's)"))], ids=lambda p: p.name if p else "none")  # fmt: skip
def test_every_scrape_annotation_names_a_metrics_port(overlay: Path) -> None:
    r = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    objects = [o for o in yaml.safe_load_all(r.stdout) if o]
    assert any(o["kind"] == "Deployment" and o["metadata"]["name"] == "kos-prometheus" for o in objects), (
        "the overlay includes deploy/monitoring")  # fmt: skip
    annotated = [o for o in [*_pods(objects), *objects] if "prometheus.io/port" in str(o)]
    assert annotated
    assert check(objects) == []


def test_the_check_finds_a_service_port_that_is_not_its_pods() -> None:
    pod = {"kind": "Deployment", "metadata": {"name": "a"}, "spec": {"template": {
        "metadata": {"labels": {"app": "a"}, "annotations": {"prometheus.io/scrape": "true",
                                                              "prometheus.io/port": "9295"}},
        "spec": {"containers": [{"args": ["controller-manager", "--metrics-listen=0.0.0.0:9295"],
                                 "ports": [{"name": "https", "containerPort": 6443}]}]}}}}  # fmt: skip
    svc = {"kind": "Service", "metadata": {"name": "s", "annotations": {"prometheus.io/scrape": "true",
                                                                         "prometheus.io/port": "443",
                                                                         "prometheus.io/scheme": "https"}},
           "spec": {"selector": {"app": "a"}, "ports": [{"port": 443, "targetPort": "https"}]}}  # fmt: skip
    problems = check([pod, svc])
    assert len(problems) == 2
    assert "scheme http, serves https" in problems[0]
    assert problems[1].startswith("Service s: prometheus.io/port 443")
