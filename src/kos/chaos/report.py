"""What each fault did to users, computed from the history: the stall, the errors, the time to recover.

Figures per fault, from its injection (`Fault.start`) until it was recovered from:

* **stall** — the longest interval without a successful write (an acknowledged create or delete, by the time
  its answer came), starting at the injection: what a user writing steadily waited at worst. The issue's
  targets: ≤ 5 s for the etcd leader's loss and one apiserver's, ≤ 20 s for the active controller manager's.
* **ready stall** — the same for NAs becoming ready (addressed and implemented): the controller manager's or
  the agents' loss stalls readiness while writes go on.
* **errors** — the calls that did not succeed while the fault lasted, by outcome and HTTP status
  (`unknown 503`, `failed 409`, `unknown 0` for a timeout or a broken connection). A quorum loss should show
  503s (kube-apiserver's answer when etcd cannot commit), not hangs.
* **write recovery** — from the heal (`Fault.healed`: the process back, or the signal that ends the stop)
  to the first successful write after it; **apiservers ready** — from the heal until every apiserver
  answered `/readyz` again (measured by kos.chaos.run, passed in).

A fault is *recovered* at the later of those two moments; one never recovered has None there, and the run
counts it as a violation. Times are seconds on the history's clock.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from kos.chaos.history import Call, Fault, Record

__all__ = ["WRITE_OPS", "FaultFigures", "calls_summary", "figures", "format_report", "longest_gap"]

WRITE_OPS = frozenset({"create", "update", "update_status", "delete", "patch"})


@dataclasses.dataclass(frozen=True, slots=True)
class FaultFigures:
    """One fault's figures (see the module docstring); None where it never happened (not recovered)."""

    name: str
    targets: tuple[str, ...]
    start: float
    healed: float
    stall: float | None
    ready_stall: float | None
    errors: Mapping[str, int]
    write_recovery: float | None
    ready_recovery: float | None
    note: str = ""

    @property
    def recovered(self) -> bool:
        return self.healed > 0 and self.write_recovery is not None and self.ready_recovery is not None


def longest_gap(start: float, times: Sequence[float], end: float | None) -> float | None:
    """The longest interval in [start, end] between `start`, the sorted `times` after it and the first time at
    or after `end` — None if no time reaches `end` (the interval never closed). `end` None: up to the last."""
    i = bisect.bisect_right(times, start)
    prev, gap = start, 0.0
    for t in times[i:]:
        gap = max(gap, t - prev)
        prev = t
        if end is not None and t >= end:
            return gap
    return gap if end is None and i < len(times) else None


def _acks(records: Iterable[Record]) -> list[float]:
    return sorted(r.end for r in records if isinstance(r, Call) and r.outcome == "ok" and r.op in WRITE_OPS)


def figures(
    records: Sequence[Record], apiservers_ready: Mapping[float, float], na_ready: Iterable[float]
) -> list[FaultFigures]:
    """The figures of every fault in `records`, in injection order. `apiservers_ready` maps a fault's `start`
    to when every apiserver was ready again after it (absent: never); `na_ready` are the times NAs became
    ready."""
    faults = sorted((r for r in records if isinstance(r, Fault)), key=lambda f: f.start)
    acks = _acks(records)
    ready = sorted(na_ready)
    calls = [r for r in records if isinstance(r, Call)]
    out: list[FaultFigures] = []
    for f in faults:
        first_ack = None
        if f.healed > 0:
            j = bisect.bisect_right(acks, f.healed)
            first_ack = acks[j] if j < len(acks) else None
        ready_at = apiservers_ready.get(f.start)
        recovered = None if first_ack is None or ready_at is None else max(first_ack, ready_at)
        stall = longest_gap(f.start, acks, recovered) if recovered is not None else None
        ready_stall = None
        if recovered is not None:
            k = bisect.bisect_left(ready, recovered)
            ready_stall = longest_gap(f.start, ready, ready[k]) if k < len(ready) else None
        until = recovered if recovered is not None else (f.healed or f.start)
        errors = collections.Counter(
            f"{c.outcome} {c.code}" for c in calls if c.outcome != "ok" and f.start <= c.end and c.start <= until
        )
        out.append(FaultFigures(
            f.name, tuple(f.targets), f.start, f.healed, stall, ready_stall, dict(sorted(errors.items())),
            None if first_ack is None else first_ack - f.healed, None if ready_at is None else ready_at - f.healed,
            f.note,
        ))  # fmt: skip
    return out


def calls_summary(records: Iterable[Record]) -> dict[str, int]:
    """Calls by `op outcome` ("create ok": 812, …), and `total`."""
    c = collections.Counter(f"{r.op} {r.outcome}" for r in records if isinstance(r, Call))
    return {"total": sum(c.values()), **dict(sorted(c.items()))}


def _s(v: float | None) -> str:
    return "never" if v is None else f"{v:.2f}"


def format_report(figs: Sequence[FaultFigures], summary: Mapping[str, int], violations: Sequence[str]) -> str:
    """The report as text: one block per fault, the call counts, then the violations (or that there are none)."""
    lines = ["fault                     targets                       stall s  ready-stall s  write-recovery s  "
             "apiservers-ready s"]  # fmt: skip
    for f in figs:
        lines.append(f"{f.name:<25} {','.join(f.targets):<29} {_s(f.stall):>7}  {_s(f.ready_stall):>13}  "
                     f"{_s(f.write_recovery):>16}  {_s(f.ready_recovery):>18}")  # fmt: skip
        errs = ", ".join(f"{k}: {v}" for k, v in f.errors.items()) or "none"
        lines.append(f"    client errors: {errs}" + (f"; {f.note}" if f.note else ""))
    lines.append("calls: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    if violations:
        lines.append(f"{len(violations)} violation(s):")
        lines += [f"  {v}" for v in violations]
    else:
        lines.append("no violation")
    return "\n".join(lines)
