"""The loop-local histogram and gauge expose exactly what prometheus_client's do (bar `_created`)."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from kos.util.loopmetrics import LoopGauge, LoopHistogram

BUCKETS = (-0.125, 0, 0.125, 0.25, 0.5, 1, 2, 4)
VALUES = [-1.0, -0.125, 0.0, 0.1, 0.125, 0.2, 0.5, 0.75, 1.0, 3.9, 4.0, 4.5, 1e9, math.inf]


def exposition(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_histogram_and_gauge_expose_what_prometheus_client_does() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("lat_seconds", "Latency.", ["node", "op"], namespace="kos", subsystem="agent", buckets=BUCKETS,
                   registry=theirs)  # fmt: skip
    h2 = LoopHistogram("lat_seconds", "Latency.", ["node", "op"], namespace="kos", subsystem="agent", buckets=BUCKETS,
                       registry=ours)  # fmt: skip
    g1 = Gauge("ifcs", "Interfaces.", ["node"], namespace="kos", registry=theirs)
    g2 = LoopGauge("ifcs", "Interfaces.", ["node"], namespace="kos", registry=ours)
    for i, v in enumerate(VALUES):
        for h in (h1, h2):
            h.labels("n1", "create" if i % 2 else "delete").observe(v)
    for g in (g1, g2):
        g.labels("n1").inc()
        g.labels("n1").inc(3)
        g.labels("n1").dec()
        g.labels("n2").set(7)
    assert exposition(ours) == exposition(theirs)
    h3, h4 = (cls("pos", "Positive buckets.", ["node"], buckets=(1, 2), registry=r) for cls, r in
              ((Histogram, theirs), (LoopHistogram, ours)))  # fmt: skip
    for h in (h3, h4):
        h.labels("n1").observe(1.5)
        h.labels("n1").observe(0.25)
    assert exposition(ours) == exposition(theirs)  # with _sum, as there when no bound is negative
    assert ours.get_sample_value("pos_sum", {"node": "n1"}) == 1.75
    assert (
        ours.get_sample_value("kos_agent_lat_seconds_bucket", {"node": "n1", "op": "create", "le": "0.125"}) == 2
    )  # -0.125 and 0.1


def test_labels_must_match_and_names_must_not_clash() -> None:
    r = CollectorRegistry()
    h = LoopHistogram("x", "X.", ["a"], buckets=(1,), registry=r)
    with pytest.raises(ValueError):
        h.labels("1", "2")
    with pytest.raises(ValueError):  # the registry refuses a second family of the same name
        Histogram("x", "X again.", ["a"], registry=r)
