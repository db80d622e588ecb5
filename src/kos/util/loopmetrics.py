"""Prometheus histograms and gauges for code that runs on one event loop: no lock per update.

prometheus_client guards every value with a `threading.Lock`, and a histogram
observation takes two of them (the bucket and the sum) plus a linear walk of the
buckets. The connection agent observes on every fabric call and remote interface
(several observations per remote NA a node programs), and `kos simnodes` runs 100
agents on one event loop: in the large-network benchmark those locked updates
were ~10% of the simulated nodes' CPU (docs/performance.md). Here an observation
is a bisect and two additions; the values are only ever touched from the loop's
thread, and read by `collect` (a scrape, also on the loop). The exposition is
prometheus_client's: the same names, labels, buckets and `_bucket`/`_count`/`_sum`
samples (no `_created`), `_sum` only where no bucket bound is negative, as there.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

C = TypeVar("C")

_go_float = cast(Callable[[float], str], floatToGoString)
"""How prometheus_client writes a bucket bound ("0.125", "1.0", "+Inf")."""


def _full_name(name: str, namespace: str, subsystem: str) -> str:
    return "_".join(p for p in (namespace, subsystem, name) if p)


class HistogramChild:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, value)] += 1  # the first bucket whose bound is >= value
        self.sum += value


class _Labelled(Generic[C]):
    """A labelled family: its name, help text and label names, and one child per label values."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], namespace: str,
                 subsystem: str) -> None:  # fmt: skip
        self.name = _full_name(name, namespace, subsystem)
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}

    def _new_child(self) -> C:
        raise NotImplementedError

    def labels(self, *values: str) -> C:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._new_child()
        return child


class LoopHistogram(_Labelled[HistogramChild]):
    """A labelled histogram (`labels(*values).observe(v)`), registered in `registry` like prometheus_client's."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
        namespace: str = "",
        subsystem: str = "",
    ) -> None:
        super().__init__(name, documentation, labelnames, namespace, subsystem)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = bounds
        registry.register(self)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self._bounds)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        # as prometheus_client's Histogram: _count always, _sum only when no bucket bound is negative (the
        # agent's first is); HistogramMetricFamily.add_metric would leave out _count too
        fam = Metric(self.name, self.documentation, "histogram")
        with_sum = self._bounds[0] >= 0
        les = [_go_float(b) for b in self._bounds]
        for values, child in list(self._children.items()):
            labels = dict(zip(self.labelnames, values, strict=True))
            running = 0
            for le, n in zip(les, child.counts, strict=True):
                running += n
                fam.add_sample(self.name + "_bucket", {**labels, "le": le}, float(running))
            fam.add_sample(self.name + "_count", labels, float(running))
            if with_sum:
                fam.add_sample(self.name + "_sum", labels, child.sum)
        yield fam


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class LoopGauge(_Labelled[GaugeChild]):
    """A labelled gauge (`labels(*values).inc()`/`.dec()`/`.set(v)`), registered in `registry`."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry,
        namespace: str = "",
        subsystem: str = "",
    ) -> None:
        super().__init__(name, documentation, labelnames, namespace, subsystem)
        registry.register(self)

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            fam.add_metric(list(values), child.value)
        yield fam
