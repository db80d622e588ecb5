"""Observe how long a block takes into a histogram: the one helper for "time this call into that histogram".

Before it, every timed call repeated the same lines — `t0 = time.perf_counter()` before the call, then
`hist.labels(..., "err").observe(time.perf_counter() - t0)` in each `except` and again after success —
and a new exit path could forget one. Now:

    with observe_seconds(metrics.list_latency):          # a histogram, or a child from .labels(...)
        items = await client.list(...)

    with Timed(metrics.fabric_latency, node, op) as t:   # a labelled family; the outcome is the last label
        try:
            await fabric.create_local_ifc(ifc)
        except NotFound:
            t.outcome = "nf"                             # a handled case of its own
            return

The outcome label is "ok" when the block ends normally, "err" when an exception leaves it (unless the block
set another), or whatever the block set in `outcome`. A block left by cancellation (or another
BaseException that is not an Exception) observes nothing: it did not finish, so it has no latency. Both take a prometheus_client histogram or a
`kos.util.loopmetrics` one (anything with `observe(seconds)` / `labels(*values)`), and measure with
`time.perf_counter` (durations, not timers: nothing waits on this clock, so it is not kos.util.clock's).

Cost: one small object per timed block (slots, no dict) — about what the `try`/`except` it replaces costs;
the label values tuple is the one `labels()` needed anyway. docs/metrics.md has the figures.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Protocol

OK = "ok"
ERR = "err"


class Observer(Protocol):
    """A histogram (or a child of one): takes an observation."""

    def observe(self, amount: float) -> None: ...


class Family(Protocol):
    """A labelled histogram family: `labels(*values)` gives the child to observe."""

    def labels(self, *values: str) -> Observer: ...


class observe_seconds:  # noqa: N801 - used as a function: `with observe_seconds(h):`
    """Observe the seconds the `with` block took into `histogram`, unless it was cancelled."""

    __slots__ = ("_histogram", "_t0")

    def __init__(self, histogram: Observer) -> None:
        self._histogram = histogram
        self._t0 = 0.0

    def __enter__(self) -> observe_seconds:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        if t is None or issubclass(t, Exception):
            self._histogram.observe(time.perf_counter() - self._t0)


class Timed:
    """Observe the seconds the `with` block took into `family.labels(*labels, outcome)`.

    `outcome` is "ok" unless the block sets it; an exception leaving the block makes an unchanged "ok" "err";
    a cancellation observes nothing.
    """

    __slots__ = ("_family", "_labels", "_t0", "outcome")

    def __init__(self, family: Family, *labels: str) -> None:
        self._family, self._labels = family, labels
        self.outcome = OK
        self._t0 = 0.0

    def __enter__(self) -> Timed:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        seconds = time.perf_counter() - self._t0
        if t is None:
            outcome = self.outcome
        elif issubclass(t, Exception):
            outcome = ERR if self.outcome == OK else self.outcome
        else:
            return  # cancelled: no latency to speak of
        self._family.labels(*self._labels, outcome).observe(seconds)
