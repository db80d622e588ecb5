"""Judge a chaos run: compare what clients were told and shown with what the store actually did.

The inputs are the run's records (kos.chaos.history: calls with outcomes, watch streams and their events)
and the store's own history (kos.chaos.storehistory, read from etcd, not through an apiserver). The
properties, as etcd's robustness tests and Jepsen state them for a linearizable store with watches:

* **No acknowledged write lost.** An `ok` create, update or status update must be a change of its key at
  exactly the resourceVersion it answered: a create the key's creation; an update usually a PUT, but an
  update that changed nothing answers the current version's revision (no write: kos.apiserver.registry
  `guaranteed_update`) and one that removed a deleting object's last finalizer the DELETE's. A create whose
  name the server generated (recorded with name "") may be any creation in its namespace at that
  revision. An `ok` delete must be
  a DELETE of its key at or after the revision it answered (or, for an object with finalizers, the PUT
  at that revision that marked it deleting). A `failed` create must not have happened: its key may not be
  created during the run unless another create of that name was acknowledged or may have applied
  (`unknown`). `unknown` calls may have applied or not: either is accepted (Jepsen's "info").
* **Each watch stream is the store's history for its selection.** Across a stream's segments (a list or a
  resume, up to the next one) object events have strictly increasing resourceVersions (bookmarks and a
  relist never go back). Within a segment the object events equal, in order, the store's changes after
  the segment's start revision up to the last revision it saw (an event's or a bookmark's: a bookmark says
  everything before it was sent), as the watch cache turns them into events for the selection
  (kos.chaos.selection) — nothing missing (a gap), nothing twice, nothing extra. A relist's objects are the
  store's objects of the selection at the list's revision. A resume starts exactly at the revision the
  previous segment saw last (client-go's reflector: `lastSyncResourceVersion`).
* **No address shown twice.** At no revision of the run do two NetworkAttachments of one VNI show the same
  address (ARCHITECTURE §8, invariant 1): the store's history replayed through kos.verify.history.
* **The end state is correct**: `kos verify` passes and every attachment is ready (kos.chaos.finalstate,
  which needs the running system; its violations are passed in as `final`).

Every violation is one line naming the record (call id, stream and segment) and the revision.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from kos.api.selectors import SelectorError
from kos.chaos.history import Call, Fault, Record, StreamError, StreamStart, WatchEvent
from kos.chaos.selection import Selection
from kos.chaos.storehistory import ADDED, DELETED, MODIFIED, Key, StoreEvent, StoreHistory
from kos.verify.history import AddressHistory

__all__ = ["WRITES", "Verdict", "check"]

WRITES = frozenset({"create", "update", "update_status", "delete"})
"""The ops whose effect on the store is checked (get and list change nothing)."""
_SHOWN = 5
"""Mismatches listed per stream segment before the rest are only counted."""


@dataclasses.dataclass(slots=True)
class Verdict:
    """`violations`, one line each (empty: the run is correct), and `summary`: counts for the report —
    `calls` {op: {outcome: n}}, `streams` {stream: {events, bookmarks, segments, relists, resumes, errors}},
    `store` {first, start, end, changes}, `addresses` {events}, `faults` [{name, targets, start, healed}]
    (times in the history's clock seconds; healed 0.0: never healed)."""

    violations: list[str]
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.violations


def check(records: Iterable[Record], store: StoreHistory, *, start: int, final: Sequence[str] = ()) -> Verdict:
    """Every violation of the properties in the module docstring by the run whose `records` began at store
    revision `start` (read before its first call and stream), judged against `store` (read after the run's
    last record, so `store.end` is at or after every revision a record names). `final` are the end-state
    violations (kos.chaos.finalstate.final_violations), reported as they are."""
    records = list(records)
    calls = [r for r in records if isinstance(r, Call)]
    out: list[str] = []
    summary: dict[str, Any] = {
        "calls": _call_counts(calls),
        "store": {"first": store.first, "start": start, "end": store.end,
                  "changes": len(store.between(start, store.end))},
        "faults": [{"name": f.name, "targets": list(f.targets), "start": f.start, "healed": f.healed}
                   for f in records if isinstance(f, Fault)],
    }  # fmt: skip
    if store.first > start:
        out.append(f"cannot check: the store's history was compacted at revision {store.first}, after the run "
                   f"began at revision {start}")  # fmt: skip
        return Verdict(out + list(final), summary)
    out += [f"store: undecodable value at {u}" for u in store.undecodable]
    out += _lost_writes(calls, store, start)
    stream_counts: dict[int, dict[str, int]] = {}
    for stream, recs in _streams(records).items():
        found, stream_counts[stream] = _check_stream(stream, recs, store)
        out += found
    summary["streams"] = stream_counts
    addresses = _addresses(store, start)
    out += addresses.violations
    summary["addresses"] = {"events": addresses.events}
    out += final
    return Verdict(out, summary)


# --- calls ---------------------------------------------------------------------------------------


def _call_counts(calls: list[Call]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for c in calls:
        per = counts.setdefault(c.op, {})
        per[c.outcome] = per.get(c.outcome, 0) + 1
    return counts


def _describe(c: Call) -> str:
    what = f"call #{c.id} {c.op} {c.resource} {c.namespace}/{c.name}"
    return f"{what} ({c.outcome}{f' {c.code}' if c.code else ''}{f' via {c.server}' if c.server else ''})"


def _lost_writes(calls: list[Call], store: StoreHistory, start: int) -> list[str]:
    by_key: dict[Key, list[StoreEvent]] = collections.defaultdict(list)
    for e in store.events:
        by_key[e.key].append(e)
    by_revision: dict[int, list[StoreEvent]] = collections.defaultdict(list)
    for e in store.events:
        by_revision[e.revision].append(e)
    may_create: set[Key] = {(c.resource, c.namespace, c.name) for c in calls
                            if c.op == "create" and c.outcome != "failed"}  # fmt: skip
    out: list[str] = []
    for c in calls:
        if c.op not in WRITES:
            continue
        key = (c.resource, c.namespace, c.name)
        events = by_key.get(key, [])
        rv = c.resource_version
        if c.outcome == "ok" and c.op != "delete":
            at = next((e for e in by_revision.get(rv, ()) if e.key[:2] == key[:2] and (not c.name or e.key == key)),
                      None)  # fmt: skip
            if rv == 0:
                out.append(f"lost write: {_describe(c)} was acknowledged without a resourceVersion: cannot check")
            elif at is None:
                changes = ", ".join(f"{e.type} at {e.revision}" for e in events) or "none"
                out.append(f"lost write: {_describe(c)} acknowledged at revision {rv}, but the store has no change "
                           f"of the key there (its changes: {changes})")  # fmt: skip
            elif c.op == "create" and at.type != ADDED:
                out.append(f"lost write: {_describe(c)} acknowledged at revision {rv}, but the store's change "
                           f"there is {at.type}, not the key's creation")  # fmt: skip
        elif c.outcome == "ok":
            lo = rv or start
            deleted = any(e.type == DELETED and e.revision >= lo for e in events)
            marked = any(e.revision == rv and e.type == MODIFIED and e.obj.metadata.deletion_timestamp is not None
                         for e in events)  # fmt: skip
            if not (deleted or marked):
                out.append(f"lost write: {_describe(c)} acknowledged at revision {rv}, but the store has no "
                           f"DELETE of the key at or after {lo}")  # fmt: skip
        elif c.outcome == "failed" and c.op == "create" and c.name and key not in may_create:
            created = [e.revision for e in events if e.type == ADDED and e.revision > start]
            if created:
                out.append(f"failed write applied: {_describe(c)} failed ({c.error or 'no message'}), but the "
                           f"store created the key at revision {created[0]} and no other create of it was "
                           f"acknowledged or unknown")  # fmt: skip
    return out


# --- streams -------------------------------------------------------------------------------------


def _streams(records: list[Record]) -> dict[int, list[StreamStart | WatchEvent | StreamError]]:
    out: dict[int, list[StreamStart | WatchEvent | StreamError]] = {}
    for r in records:
        if isinstance(r, StreamStart | WatchEvent | StreamError):
            out.setdefault(r.stream, []).append(r)
    return out


@dataclasses.dataclass(slots=True)
class _Segment:
    """One list or resume of a stream and the events it delivered until the next one."""

    number: int
    start: StreamStart
    events: list[WatchEvent] = dataclasses.field(default_factory=list)
    last: int = 0
    """The last revision seen: the start's, then each event's or bookmark's."""

    def name(self, stream: int) -> str:
        how = "list" if self.start.relist else "resume"
        on = f" on {self.start.server}" if self.start.server else ""
        return f"stream {stream} segment {self.number} ({how} at {self.start.resource_version}{on})"


def _check_stream(
    stream: int, recs: list[StreamStart | WatchEvent | StreamError], store: StoreHistory
) -> tuple[list[str], dict[str, int]]:
    out: list[str] = []
    counts = {"events": 0, "bookmarks": 0, "segments": 0, "relists": 0, "resumes": 0, "errors": 0}
    segments: list[_Segment] = []
    last = 0  # the last revision the stream saw, over all its segments
    for r in recs:
        if isinstance(r, StreamError):
            counts["errors"] += 1
            continue
        if isinstance(r, StreamStart):
            seg = _Segment(len(segments) + 1, r, last=r.resource_version)
            counts["segments"] += 1
            counts["relists" if r.relist else "resumes"] += 1
            if r.relist and r.resource_version < last:
                out.append(f"{seg.name(stream)}: listed at revision {r.resource_version}, before revision {last} "
                           f"the stream had already seen")  # fmt: skip
            if not r.relist and segments and r.resource_version != segments[-1].last:
                out.append(f"{seg.name(stream)}: resumed from revision {r.resource_version}, not from "
                           f"{segments[-1].last}, the last revision the previous segment saw")  # fmt: skip
            segments.append(seg)
            last = max(last, r.resource_version)
            continue
        if not segments:
            out.append(f"stream {stream}: event at revision {r.resource_version} before any list or watch")
            continue
        seg = segments[-1]
        rv = r.resource_version
        if r.type == "BOOKMARK":
            counts["bookmarks"] += 1
            if rv < last:
                out.append(f"{seg.name(stream)}: bookmark at revision {rv} after revision {last}")
        else:
            counts["events"] += 1
            seg.events.append(r)
            if rv <= last:
                out.append(f"{seg.name(stream)}: {r.type} {r.namespace}/{r.name} at revision {rv} after revision "
                           f"{last}: resourceVersions must increase")  # fmt: skip
        seg.last = max(seg.last, rv)
        last = max(last, rv)
    for seg in segments:
        out += _check_segment(stream, seg, store)
    return out, counts


def _check_segment(stream: int, seg: _Segment, store: StoreHistory) -> list[str]:
    s = seg.start
    name = seg.name(stream)
    try:
        sel = Selection.parse(s.resource, s.namespace, s.label_selector, s.field_selector)
    except (KeyError, SelectorError) as err:
        return [f"{name}: cannot check the selection: {err}"]
    if s.resource_version < store.first:
        return [f"{name}: cannot check: the store's history was compacted at revision {store.first}"]
    if seg.last > store.end:
        return [f"{name}: cannot check: it saw revision {seg.last}, after the store history read ends "
                f"({store.end}); read the store after the run"]  # fmt: skip
    out: list[str] = []
    if s.relist:
        out += _check_list(name, s, sel, store)
    want: list[tuple[int, str, str, str]] = []
    for e in store.between(s.resource_version, seg.last):
        if e.key[0] != s.resource:
            continue
        typ = sel.event_type(e)
        if typ is not None:
            want.append((e.revision, typ, e.key[1], e.key[2]))
    got = [(r.resource_version, r.type, r.namespace, r.name) for r in seg.events]
    if got != want:
        out += _differences(name, want, got)
    return out


def _check_list(name: str, s: StreamStart, sel: Selection, store: StoreHistory) -> list[str]:
    state = store.state_at(s.resource_version)
    want = {(k[1], k[2]): int(o.metadata.resource_version) for k, o in state.items()
            if k[0] == s.resource and sel.matches(o)}  # fmt: skip
    got = {(ns, n): rv for ns, n, rv in s.objects}
    out: list[str] = []
    for (ns, n), rv in sorted(got.items()):
        if (ns, n) not in want:
            out.append(f"{name}: the list has {ns}/{n} (revision {rv}), absent from the store's selection at "
                       f"revision {s.resource_version}")  # fmt: skip
        elif want[(ns, n)] and rv != want[(ns, n)]:
            out.append(f"{name}: the list has {ns}/{n} at revision {rv}, the store at revision "
                       f"{s.resource_version} has it at {want[(ns, n)]}")  # fmt: skip
    for ns, n in sorted(want.keys() - got.keys()):
        out.append(f"{name}: the list lacks {ns}/{n} (revision {want[(ns, n)]}), in the store's selection at "
                   f"revision {s.resource_version}")  # fmt: skip
    return out


def _differences(name: str, want: list[tuple[int, str, str, str]], got: list[tuple[int, str, str, str]]) -> list[str]:
    """The events `got` that the store does not explain and the store's events `got` lacks, by revision."""
    expected = {(rev, ns, n): typ for rev, typ, ns, n in want}
    seen: set[tuple[int, str, str]] = set()
    found: list[str] = []
    for rev, typ, ns, n in got:
        k = (rev, ns, n)
        w = expected.get(k)
        if k in seen:
            found.append(f"{name}: duplicate: {typ} {ns}/{n} at revision {rev} delivered again")
        elif w is None:
            found.append(f"{name}: extra: {typ} {ns}/{n} at revision {rev}, which the store's history does not "
                         f"give this selection")  # fmt: skip
        elif w != typ:
            found.append(f"{name}: wrong event at revision {rev}: got {typ} {ns}/{n}, the store gives {w} {ns}/{n}")
        seen.add(k)
    found += [f"{name}: gap: {typ} {ns}/{n} at revision {rev} never delivered" for rev, typ, ns, n in want
              if (rev, ns, n) not in seen]  # fmt: skip
    if not found:  # the same events in another order
        found.append(f"{name}: events out of order: got revisions {[g[0] for g in got][:20]}")
    if len(found) > _SHOWN:
        found = [*found[:_SHOWN], f"{name}: … and {len(found) - _SHOWN} more differences"]
    return found


# --- addresses -----------------------------------------------------------------------------------


def _addresses(store: StoreHistory, start: int) -> AddressHistory:
    """The NetworkAttachments' addresses replayed revision by revision from `start` (invariant 1)."""
    nas = [o for k, o in store.state_at(start).items() if k[0] == "networkattachments"]
    history = AddressHistory(nas, str(start))
    for e in store.between(start, store.end):
        if e.key[0] == "networkattachments":
            history.apply(e.type, e.obj)
    return history
