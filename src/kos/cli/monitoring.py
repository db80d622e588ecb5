"""`kos up --monitoring`: a Prometheus that scrapes every process of a one-machine kos, found through cluster.json.

Prometheus is not kos's: it is the `prometheus` binary on PATH (Debian: `apt-get install prometheus`), run as
one more supervised child of `kos up` (role `prometheus` in cluster.json). Its configuration is generated from
cluster.json once every other child is up — their URLs do not change when they restart —
with one job per role (`kos-etcd`, `kos-apiserver`, `kos-controller-manager`, `kos-simnodes`, `kos-agent`),
so the dashboards and alert rules of deploy/monitoring, which select by metric name only (and etcd's
dashboard by `job="kos-etcd"`), work against it unchanged.

Secure as the rest of `kos up` (docs/security.md): Prometheus scrapes over HTTPS, verifying each listener
against the cluster CA (etcd's against etcd's CA), as `kos:prometheus` in group `system:monitoring` (the one
group the apiserver lets read /metrics) and, for etcd, with the etcd client certificate; its own web listener
is HTTPS on 127.0.0.1 with a certificate from the cluster CA, and, like the other read-only listeners of
`kos up`, does not authenticate. With `--insecure` everything is plain HTTP.

    <state-dir>/prometheus/prometheus.yml         the generated configuration (written at start)
    <state-dir>/prometheus/web.yml                its web listener's TLS (Prometheus' --web.config.file)
    <state-dir>/prometheus/data/                  its TSDB (kept across runs with the state directory)
    <state-dir>/pki/prometheus-client.crt, .key   `kos:prometheus` in `system:monitoring` (issued at each start)
    <state-dir>/pki/prometheus-serving.crt, .key  its web listener (127.0.0.1, localhost)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from kos.apiserver.auth.user import MONITORING_GROUP
from kos.pki import directory
from kos.pki.authority import Identity, issue_client, issue_server

PROMETHEUS_DIR = "prometheus"
CONFIG_FILE = "prometheus.yml"
WEB_CONFIG_FILE = "web.yml"
CLIENT, SERVING = "prometheus-client", "prometheus-serving"
USER = "kos:prometheus"
"""The user Prometheus scrapes as (in group system:monitoring)."""
SCRAPE_INTERVAL = "2s"
"""How often each process is scraped: short, so a demo run of twenty seconds gives rates and plots (a scrape of
every process of `kos up --ha` costs Prometheus a few milliseconds of CPU)."""
JOB_PREFIX = "kos-"
"""Jobs are named `kos-<role>`."""
PROCESS_LABEL = "process"
"""The target label naming each process as cluster.json does (not `name`: kos's queue and leader-election
metrics have a `name` label of their own, which Prometheus would rename `exported_name`)."""


RULES = Path(__file__).resolve().parents[3] / "deploy" / "monitoring" / "rules" / "kos-alerts.yaml"
"""deploy/monitoring's alert rules, where kos runs from a source tree (an installed wheel has no deploy/)."""


def binary() -> str | None:
    """The `prometheus` binary on PATH, or None."""
    return shutil.which("prometheus")


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """One process cluster.json lists: the fields scraping needs."""

    name: str
    role: str
    metrics_url: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class ScrapeTLS:
    """The PEM files Prometheus scrapes a secure cluster with (paths)."""

    ca: Path
    """The cluster CA: every kos listener's certificate."""
    cert: Path
    key: Path
    """The `kos:prometheus` client identity."""
    etcd_ca: Path | None = None
    etcd_cert: Path | None = None
    etcd_key: Path | None = None
    """etcd's CA and a client identity it accepts (`kos up --ha`); None without etcd members."""


@dataclasses.dataclass(frozen=True, slots=True)
class Files:
    """Where one `kos up --monitoring`'s Prometheus keeps its files (see the module docstring)."""

    dir: Path
    config: Path
    web_config: Path | None
    data: Path
    tls: ScrapeTLS | None


def prepare(state_dir: Path, *, secure: bool, etcd: tuple[Path, Path, Path] | None = None) -> Files:
    """Make `<state-dir>/prometheus` and, if `secure`, Prometheus' two identities from the cluster CA in
    `<state-dir>/pki` (which kos.cli.clusterpki.prepare made first) and its web config. `etcd` is
    (CA, client certificate, client key) of `kos up --ha`'s etcd. Raises directory.PKIError if the CA cannot
    be read, OSError if a file cannot be written."""
    d = state_dir / PROMETHEUS_DIR
    (d / "data").mkdir(parents=True, exist_ok=True)
    if not secure:
        return Files(d, d / CONFIG_FILE, None, d / "data", None)
    pki = state_dir / "pki"
    ca = directory.load(pki, directory.CA)
    _write(pki, CLIENT, issue_client(ca, USER, [MONITORING_GROUP]))
    _write(pki, SERVING, issue_server(ca, "kos-prometheus", ["localhost"], [ipaddress.ip_address("127.0.0.1")]))
    client_crt, client_key = directory.paths(pki, CLIENT)
    serving_crt, serving_key = directory.paths(pki, SERVING)
    tls = ScrapeTLS(pki / "ca.crt", client_crt, client_key, *(etcd or (None, None, None)))
    web = d / WEB_CONFIG_FILE
    web.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": str(serving_crt.resolve()),
                                                         "key_file": str(serving_key.resolve())}}))  # fmt: skip
    return Files(d, d / CONFIG_FILE, web, d / "data", tls)


def _write(pki: Path, name: str, identity: Identity) -> None:
    directory.write(pki, name, identity, force=True)


def args(files: Files, listen: str) -> list[str]:
    """Prometheus' command line (after the binary) for `files`, its web listener on `listen` (HOST:PORT)."""
    out = [f"--config.file={files.config.resolve()}", f"--storage.tsdb.path={files.data.resolve()}",
           f"--web.listen-address={listen}", "--storage.tsdb.retention.time=2d", "--log.level=warn"]  # fmt: skip
    if files.web_config is not None:
        out.append(f"--web.config.file={files.web_config.resolve()}")
    return out


def scrape_config(components: list[Target], tls: ScrapeTLS | None, rules: Path | None = None) -> dict[str, Any]:
    """Prometheus' configuration for the processes in `components` (cluster.json's): one job per role with a
    /metrics, `kos-<role>`, each process a target labelled PROCESS_LABEL (its cluster.json name). `tls` None: plain
    HTTP. `rules`: a rule file to evaluate (deploy/monitoring's alerts). Shape: the parsed YAML of a
    prometheus.yml (`global`, `rule_files`, `scrape_configs`)."""
    jobs: dict[str, dict[str, Any]] = {}
    for c in components:
        if not c.metrics_url:
            continue
        u = urllib.parse.urlsplit(c.metrics_url)
        key = f"{c.role} {u.scheme} {u.path}"
        job = jobs.get(key)
        if job is None:
            name = JOB_PREFIX + c.role
            if any(j["job_name"] == name for j in jobs.values()):  # the same role served two ways: unusual
                name = f"{name}-{len(jobs)}"
            job = {"job_name": name, "scheme": u.scheme,
                   "metrics_path": u.path or "/metrics", "static_configs": []}  # fmt: skip
            if u.scheme == "https" and tls is not None:
                job["tls_config"] = _tls_config(c.role, tls)
            jobs[key] = job
        job["static_configs"].append({"targets": [u.netloc], "labels": {PROCESS_LABEL: c.name}})
    return {"global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                       "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": [str(rules.resolve())] if rules is not None else [],
            "scrape_configs": list(jobs.values())}  # fmt: skip


def _tls_config(role: str, tls: ScrapeTLS) -> dict[str, str]:
    if role == "etcd" and tls.etcd_ca is not None and tls.etcd_cert is not None and tls.etcd_key is not None:
        ca, cert, key = tls.etcd_ca, tls.etcd_cert, tls.etcd_key
    else:
        ca, cert, key = tls.ca, tls.cert, tls.key
    return {"ca_file": str(ca.resolve()), "cert_file": str(cert.resolve()), "key_file": str(key.resolve())}


def read_targets(cluster_file: Path) -> list[Target]:
    """The processes cluster.json at `cluster_file` lists. Raises OSError, ValueError (not JSON) or KeyError."""
    doc = json.loads(cluster_file.read_text())
    return [Target(c["name"], c["role"], c.get("metrics_url")) for c in doc["components"]]


def write_config(files: Files, cluster_file: Path) -> None:
    """Write `files.config` from the processes cluster.json at `cluster_file` lists (Prometheus itself too:
    it scrapes its own /metrics), evaluating RULES where they are. Raises OSError, ValueError or KeyError for a
    cluster.json it cannot read."""
    rules = RULES if RULES.is_file() else None
    config = scrape_config(read_targets(cluster_file), files.tls, rules)
    files.config.write_text(yaml.safe_dump(config, sort_keys=False))
