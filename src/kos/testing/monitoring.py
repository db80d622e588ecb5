"""What the monitoring tests read out of deploy/monitoring: the PromQL of every dashboard panel and alert rule, and
the metric names in it (and, re-exported, kos.cli.monitoringapi's Prometheus client).

The metric names are found without a PromQL parser in Python (there is none maintained on PyPI): string
literals, label matchers, grouping clauses and durations are cut out of the expression, and of the identifiers
left, those called as functions or aggregations and the binary-operator keywords are dropped. That holds for
the expressions of deploy/monitoring (the tests also have promtool and a live Prometheus parse every one); it
is not a general PromQL tokenizer (no `offset`/`@` modifiers, no `__name__` matchers).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import yaml

from kos.cli.monitoringapi import PrometheusAPI

__all__ = ["PrometheusAPI", "Expr", "dashboard_files", "dashboard_exprs", "rule_exprs", "metric_names"]

MONITORING = Path(__file__).resolve().parents[3] / "deploy" / "monitoring"
"""deploy/monitoring of this source tree."""
DASHBOARDS = MONITORING / "dashboards"
RULES = MONITORING / "rules" / "kos-alerts.yaml"
RULE_TESTS = MONITORING / "rules" / "kos-alerts.test.yaml"
CLUSTER_CONFIG = MONITORING / "prometheus" / "prometheus.yml"

KEYWORDS = frozenset({"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
                      "group_right", "offset", "inf", "nan"})  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Expr:
    """One PromQL expression of deploy/monitoring: where it is (`dashboard / panel` or `rule <alert>`) and it."""

    where: str
    expr: str


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def dashboard_exprs(path: Path) -> list[Expr]:
    """Every target expression of every panel of the dashboard at `path`."""
    doc = json.loads(path.read_text())
    out = []
    for panel in _panels(doc.get("panels", [])):
        for target in panel.get("targets", []):
            out.append(Expr(f"{doc['title']} / {panel['title']}", target["expr"]))
    return out


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out += _panels(p.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def rule_exprs(path: Path = RULES) -> list[Expr]:
    """Every rule's expression in the Prometheus rule file at `path`."""
    doc = yaml.safe_load(path.read_text())
    return [Expr(f"rule {r.get('alert') or r.get('record')}", r["expr"])
            for g in doc["groups"] for r in g["rules"]]  # fmt: skip


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> list[str]:
    """The metric names `expr` selects, in order of first use (see the module docstring for the limits)."""
    s = _STRING.sub('""', expr)
    s = _MATCHERS.sub(" ", s)
    s = _GROUPING.sub(" ", s)
    s = _RANGE.sub(" ", s)
    names: list[str] = []
    for m in _IDENT.finditer(s):
        word = m.group(0)
        rest = s[m.end() :].lstrip()
        if word.lower() in KEYWORDS or rest.startswith("("):
            continue
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # the exponent or unit of a number: 1e3
        if word not in names:
            names.append(word)
    return names
