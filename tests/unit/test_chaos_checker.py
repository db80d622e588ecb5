"""kos.chaos.checker on synthetic runs: each kind of violation is found, and its correct twin passes.

The store histories are built the way kos.chaos.storehistory builds them from etcd (a list at the end, the
changes with their previous values, rolled back), from a tiny in-test store with etcd's revision rules.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import msgspec

from kos.api import codec
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
from kos.chaos.checker import check
from kos.chaos.finalstate import unready
from kos.chaos.history import Call, Fault, Outcome, Record, StreamError, StreamStart, WatchEvent
from kos.chaos.storehistory import StoreHistory, build_history
from kos.storage.interface import Event, EventType

NAS = "networkattachments"


def na(name: str, *, ip: str = "", vni: int = 0, labels: dict[str, str] | None = None,
       deleting: bool = False) -> NetworkAttachment:  # fmt: skip
    stamp = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) if deleting else None
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace="ns", labels=labels or {}, deletion_timestamp=stamp),
        spec=NetworkAttachmentSpec(node="n1", subnet="s"),
        status=NetworkAttachmentStatus(ipv4=ip, address_vni=vni),
    )


@dataclasses.dataclass
class FakeEtcd:
    """Keys, one global revision, and every change with its previous value, as etcd keeps them."""

    revision: int = 100
    keys: dict[str, tuple[bytes, int]] = dataclasses.field(default_factory=dict)
    changes: list[Event] = dataclasses.field(default_factory=list)

    def put(self, obj: Any) -> int:
        key = f"/{NAS}/{obj.metadata.namespace}/{obj.metadata.name}"
        self.revision += 1
        old = self.keys.get(key)
        value = codec.encode(obj)
        typ = EventType.ADDED if old is None else EventType.MODIFIED
        self.changes.append(Event(typ, key, value, old[0] if old else None, self.revision))
        self.keys[key] = (value, self.revision)
        return self.revision

    def delete(self, name: str) -> int:
        key = f"/{NAS}/ns/{name}"
        self.revision += 1
        old = self.keys.pop(key)
        self.changes.append(Event(EventType.DELETED, key, old[0], old[0], self.revision))
        return self.revision

    def history(self, first: int = 0) -> StoreHistory:
        items = [(k, v, mod) for k, (v, mod) in sorted(self.keys.items())]
        return build_history(items, self.revision, [c for c in self.changes if c.revision > first], first)


def call(id: int, op: str, name: str, outcome: Outcome, rv: int = 0, code: int = 0) -> Call:
    return Call(id=id, op=op, resource=NAS, namespace="ns", name=name, start=float(id), end=float(id) + 0.5,
                outcome=outcome, resource_version=rv, code=code)  # fmt: skip


def start(stream: int, rv: int, *, relist: bool, objects: list[tuple[str, str, int]] | None = None,
          labels: str = "") -> StreamStart:  # fmt: skip
    return StreamStart(stream=stream, time=0.0, resource=NAS, namespace="ns", label_selector=labels,
                       field_selector="", resource_version=rv, relist=relist, objects=objects or [])  # fmt: skip


def ev(stream: int, typ: str, name: str, rv: int) -> WatchEvent:
    return WatchEvent(stream=stream, time=0.0, type=typ, namespace="ns" if name else "", name=name,
                      resource_version=rv)  # fmt: skip


def only(violations: list[str], word: str) -> list[str]:
    return [v for v in violations if word in v]


# --- the store history -------------------------------------------------------------------------


def test_store_history_rolls_back_to_its_first_revision() -> None:
    etcd = FakeEtcd()
    r0 = etcd.put(na("c"))
    r1 = etcd.put(na("a"))
    r2 = etcd.put(na("b"))
    r3 = etcd.put(na("a", ip="10.0.0.1", vni=7))
    r4 = etcd.delete("b")
    whole = etcd.history()
    assert whole.initial == {}  # from revision 0 nothing existed: the list rolled back through every change
    assert [(e.revision, e.type) for e in whole.events] == [(r0, "ADDED"), (r1, "ADDED"), (r2, "ADDED"),
                                                            (r3, "MODIFIED"), (r4, "DELETED")]  # fmt: skip
    prev = whole.events[3].prev
    assert prev is not None and prev.metadata.resource_version == str(r1)
    assert whole.events[4].obj.metadata.resource_version == str(r4)  # a deletion carries the last state
    at2 = whole.state_at(r2)
    assert sorted(k[2] for k in at2) == ["a", "b", "c"] and at2[(NAS, "ns", "a")].status.ipv4 == ""
    assert whole.state_at(r4).keys() == {(NAS, "ns", "a"), (NAS, "ns", "c")}
    compacted = etcd.history(first=r2)  # history up to r2 gone: the state at r2 comes from the rollback
    assert compacted.first == r2
    assert sorted(k[2] for k in compacted.initial) == ["a", "b", "c"]
    assert compacted.initial[(NAS, "ns", "c")].metadata.resource_version == str(r0)  # unchanged since: listed
    # a version changed after the compaction has a revision the history no longer tells: 0
    assert compacted.initial[(NAS, "ns", "a")].metadata.resource_version == "0"
    assert compacted.initial[(NAS, "ns", "b")].metadata.resource_version == "0"


def test_a_compacted_history_cannot_check_a_run_that_began_before_it() -> None:
    etcd = FakeEtcd()
    etcd.put(na("a"))
    r2 = etcd.put(na("b"))
    assert check([], etcd.history(first=r2), start=r2).ok
    verdict = check([], etcd.history(first=r2), start=r2 - 1)
    assert verdict.violations == [f"cannot check: the store's history was compacted at revision {r2}, after the "
                                  f"run began at revision {r2 - 1}"]  # fmt: skip


# --- acknowledged writes ----------------------------------------------------------------------


def test_an_acknowledged_write_must_be_at_its_revision() -> None:
    etcd = FakeEtcd()
    begin = etcd.revision
    r1 = etcd.put(na("a"))
    r2 = etcd.put(na("a", ip="10.0.0.1", vni=1))
    r3 = etcd.put(na("a", ip="10.0.0.1", vni=1, labels={"x": "y"}))
    store = etcd.history()
    good = [call(1, "create", "a", "ok", r1, 201), call(2, "update_status", "a", "ok", r2, 200),
            call(3, "update", "a", "ok", r3, 200)]  # fmt: skip
    verdict = check(good, store, start=begin)
    assert verdict.ok, verdict.violations
    assert verdict.summary["calls"] == {"create": {"ok": 1}, "update_status": {"ok": 1}, "update": {"ok": 1}}
    lost = check([call(1, "create", "a", "ok", r1 + 50, 201)], store, start=begin).violations
    assert lost == [f"lost write: call #1 create networkattachments ns/a (ok 201) acknowledged at revision "
                    f"{r1 + 50}, but the store has no change of the key there (its changes: ADDED at {r1}, "
                    f"MODIFIED at {r2}, MODIFIED at {r3})"]  # fmt: skip
    not_created = check([call(2, "create", "a", "ok", r2, 201)], store, start=begin).violations
    assert only(not_created, "lost write: call #2") and only(not_created, "is MODIFIED, not the key's creation")
    # an update that changed nothing answers the current revision without writing: accepted
    assert check([call(3, "update", "a", "ok", r1, 200)], store, start=begin).ok


def test_an_acknowledged_write_at_another_keys_revision_is_lost() -> None:
    etcd = FakeEtcd()
    begin = etcd.revision
    etcd.put(na("a"))
    rb = etcd.put(na("b"))
    store = etcd.history()
    found = check([call(1, "update", "a", "ok", rb, 200)], store, start=begin).violations
    assert only(found, f"lost write: call #1 update networkattachments ns/a (ok 200) acknowledged at revision {rb}")
    generated = call(2, "create", "", "ok", rb, 201)  # a generated name: any creation in the namespace
    assert check([generated], store, start=begin).ok


def test_an_acknowledged_delete_must_have_deleted_the_key() -> None:
    etcd = FakeEtcd()
    begin = etcd.revision
    r1 = etcd.put(na("a"))
    etcd.put(na("b"))
    r3 = etcd.delete("a")
    r4 = etcd.put(na("b", deleting=True))  # finalizers: the delete marks it, the GC deletes it later
    store = etcd.history()
    ok = [
        call(1, "delete", "a", "ok", r3, 200),
        call(2, "delete", "b", "ok", r4, 200),
        call(3, "delete", "a", "ok", r1, 200),
    ]  # the answer carried the deleted object's last revision
    assert check(ok, store, start=begin).ok
    lost = check([call(4, "delete", "b", "ok", r3, 200)], store, start=begin).violations
    assert only(lost, "lost write: call #4 delete networkattachments ns/b") and len(lost) == 1


def test_unknown_outcomes_are_accepted_either_way() -> None:
    etcd = FakeEtcd()
    begin = etcd.revision
    etcd.put(na("applied"))
    store = etcd.history()
    calls = [call(1, "create", "applied", "unknown", code=503), call(2, "create", "not-applied", "unknown"),
             call(3, "delete", "applied", "unknown"), call(4, "update", "not-applied", "unknown")]  # fmt: skip
    verdict = check(calls, store, start=begin)
    assert verdict.ok, verdict.violations
    assert verdict.summary["calls"]["create"] == {"unknown": 2}


def test_a_failed_create_must_not_appear() -> None:
    etcd = FakeEtcd()
    begin = etcd.revision
    r1 = etcd.put(na("a"))
    store = etcd.history()
    failed = call(1, "create", "a", "failed", code=422)
    bad = check([failed], store, start=begin).violations
    assert bad == [f"failed write applied: call #1 create networkattachments ns/a (failed 422) failed (no "
                   f"message), but the store created the key at revision {r1} and no other create of it was "
                   f"acknowledged or unknown"]  # fmt: skip
    assert check([failed, call(2, "create", "a", "unknown")], store, start=begin).ok  # that one may have
    assert check([call(3, "create", "b", "failed", code=409)], store, start=begin).ok  # never appeared


# --- watch streams ----------------------------------------------------------------------------


def _stream_run() -> tuple[StoreHistory, int, list[Record]]:
    """A run with one stream: a list, events and a bookmark, a break, a resume, more events."""
    etcd = FakeEtcd()
    r0 = etcd.put(na("old"))
    r1 = etcd.put(na("a"))
    r2 = etcd.put(na("a", ip="10.0.0.1", vni=1))
    r3 = etcd.put(na("b"))
    r4 = etcd.delete("a")
    r5 = etcd.put(na("c"))
    records: list[Record] = [
        start(1, r0, relist=True, objects=[("ns", "old", r0)]),
        ev(1, "ADDED", "a", r1), ev(1, "MODIFIED", "a", r2), ev(1, "BOOKMARK", "", r2),
        StreamError(stream=1, time=0.0, error="ServiceUnavailable: connection reset"),
        start(1, r2, relist=False),
        ev(1, "ADDED", "b", r3), ev(1, "DELETED", "a", r4), ev(1, "ADDED", "c", r5),
    ]  # fmt: skip
    return etcd.history(), r0 - 1, records


def test_a_stream_equal_to_the_store_passes() -> None:
    store, begin, records = _stream_run()
    verdict = check(records, store, start=begin)
    assert verdict.ok, verdict.violations
    assert verdict.summary["streams"] == {1: {"events": 5, "bookmarks": 1, "segments": 2, "relists": 1,
                                              "resumes": 1, "errors": 1}}  # fmt: skip


def test_a_missing_event_is_a_gap() -> None:
    store, begin, records = _stream_run()
    del records[6]  # ADDED b
    found = check(records, store, start=begin).violations
    rv = store.events[3].revision
    assert found == [f"stream 1 segment 2 (resume at {rv - 1}): gap: ADDED ns/b at revision {rv} never delivered"]


def test_a_repeated_event_is_a_duplicate() -> None:
    store, begin, records = _stream_run()
    records.insert(7, records[6])
    found = check(records, store, start=begin).violations
    assert only(found, "duplicate: ADDED ns/b") and only(found, "resourceVersions must increase")


def test_an_event_the_store_never_had_is_extra() -> None:
    store, begin, records = _stream_run()
    records.append(ev(1, "ADDED", "ghost", store.end))  # revision end is c's creation: wrong object
    records.append(ev(1, "ADDED", "ghost", store.end + 1))
    store.end += 1  # the history read covers that revision, with no change in it
    found = check(records, store, start=begin).violations
    assert only(found, "extra: ADDED ns/ghost") and only(found, "resourceVersions must increase")


def test_a_resume_must_start_where_the_stream_left_off() -> None:
    store, begin, records = _stream_run()
    resume = records[5]
    assert isinstance(resume, StreamStart)
    records[5] = msgspec.structs.replace(resume, resource_version=resume.resource_version - 1)
    found = check(records, store, start=begin).violations
    assert only(found, f"resumed from revision {resume.resource_version - 1}, not from {resume.resource_version}")
    assert only(found, "gap: MODIFIED ns/a")  # from there the store gives a's change again


def test_a_relist_must_equal_the_store_at_its_revision() -> None:
    store, begin, records = _stream_run()
    listed = records[0]
    assert isinstance(listed, StreamStart)
    records[0] = msgspec.structs.replace(listed, objects=[])
    found = check(records, store, start=begin).violations
    assert found == [f"stream 1 segment 1 (list at {listed.resource_version}): the list lacks ns/old (revision "
                     f"{listed.resource_version}), in the store's selection at revision "
                     f"{listed.resource_version}"]  # fmt: skip


def test_bookmarks_and_relists_may_not_go_back() -> None:
    store, begin, records = _stream_run()
    records.insert(3, ev(1, "BOOKMARK", "", store.events[1].revision - 1))
    found = check(records, store, start=begin).violations
    assert only(found, "bookmark at revision")


def test_selector_transitions_follow_the_watch_cache() -> None:
    etcd = FakeEtcd()
    r0 = etcd.revision
    r1 = etcd.put(na("a", labels={"team": "x"}))
    etcd.put(na("b"))  # never selected
    r3 = etcd.put(na("a", labels={"team": "y"}))  # leaves the selection: DELETED
    r4 = etcd.put(na("a", labels={"team": "x"}))  # comes back: ADDED
    r5 = etcd.put(na("a", labels={"team": "x"}, ip="10.0.0.9", vni=3))  # stays: MODIFIED
    store = etcd.history()
    good: list[Record] = [start(1, r0, relist=True, labels="team=x"), ev(1, "ADDED", "a", r1),
                          ev(1, "DELETED", "a", r3), ev(1, "ADDED", "a", r4), ev(1, "MODIFIED", "a", r5)]  # fmt: skip
    assert check(good, store, start=r0).ok
    bad = list(good)
    bad[2] = ev(1, "MODIFIED", "a", r3)
    found = check(bad, store, start=r0).violations
    assert found == [f"stream 1 segment 1 (list at {r0}): wrong event at revision {r3}: got MODIFIED ns/a, the "
                     f"store gives DELETED ns/a"]  # fmt: skip


# --- addresses --------------------------------------------------------------------------------


def test_an_address_shown_twice_for_one_revision_is_found() -> None:
    etcd = FakeEtcd()
    begin = etcd.revision
    etcd.put(na("a", ip="10.0.0.1", vni=5))
    r2 = etcd.put(na("b", ip="10.0.0.1", vni=5))  # both show it at r2 only
    etcd.put(na("a"))
    etcd.put(na("c", ip="10.0.0.1", vni=6))  # another VNI: not a duplicate
    verdict = check([], etcd.history(), start=begin)
    assert verdict.violations == [f"address: at revision {r2} 10.0.0.1 in VNI 5 is shown by 2 NAs: ns/a, ns/b"]
    twin = FakeEtcd()
    twin.put(na("a", ip="10.0.0.1", vni=5))
    twin.put(na("a"))  # released first
    twin.put(na("b", ip="10.0.0.1", vni=5))
    assert check([], twin.history(), start=begin).ok


def test_final_violations_are_reported_and_faults_summarised() -> None:
    etcd = FakeEtcd()
    fault = Fault(name="apiserver-kill", targets=["apiserver-1"], start=3.0, healed=4.5)
    verdict = check([fault], etcd.history(), start=etcd.revision, final=["ready: NA ns/a is not ready"])
    assert verdict.violations == ["ready: NA ns/a is not ready"]
    assert verdict.summary["faults"] == [{"name": "apiserver-kill", "targets": ["apiserver-1"], "start": 3.0,
                                          "healed": 4.5}]  # fmt: skip


def test_records_round_trip_unchanged_through_the_checker() -> None:
    store, begin, records = _stream_run()
    again = [msgspec.json.decode(msgspec.json.encode(r), type=Record) for r in records]
    assert check(again, store, start=begin).ok


def test_unready_names_every_attachment_not_ready_unless_it_is_being_deleted() -> None:
    ready = msgspec.structs.replace(
        na("ready", ip="10.0.0.2", vni=1),
        status=NetworkAttachmentStatus(ipv4="10.0.0.2", address_vni=1, mac_address="m", ifc_name="i", host_ip="h"),
    )
    got = unready([ready, na("waiting", ip="10.0.0.3", vni=1), na("going", deleting=True)])
    assert got == ["ready: NA ns/waiting is not ready at the end of the run"]
