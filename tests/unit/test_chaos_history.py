"""kos.chaos.history: records round-trip through the file, outcomes are classified as a client can know them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kos.api.errors import Conflict, StatusError
from kos.chaos.history import Call, Fault, History, StreamStart, WatchEvent, classify, read
from kos.http.clientresponse import ConnectionFailed
from kos.testing.clock import FakeClock


async def test_calls_and_events_round_trip(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "h.jsonl"
    with History(path, clock) as h:
        async with h.call("create", "networkattachments", "ns", "a") as c:
            await clock.advance(0.5)
            c.ok("17", code=201, server="https://a")
        with pytest.raises(Conflict):
            async with h.call("update", "networkattachments", "ns", "a"):
                raise Conflict("stale")
        s = h.new_stream()
        h.add(StreamStart(stream=s, time=h.now(), resource="networkattachments", namespace="", label_selector="",
                          field_selector="", resource_version=16, relist=True, objects=[("ns", "b", 12)]))  # fmt: skip
        h.add(WatchEvent(stream=s, time=h.now(), type="ADDED", namespace="ns", name="a", resource_version=17))
        h.add(Fault(name="apiserver-kill", targets=["apiserver-2"], start=1.0, healed=2.0))
    got = list(read(path))
    assert got == h.records
    first = got[0]
    assert isinstance(first, Call)
    assert (first.outcome, first.code, first.resource_version, first.end - first.start) == ("ok", 201, 17, 0.5)
    second = got[1]
    assert isinstance(second, Call) and (second.outcome, second.code) == ("failed", 409)
    assert isinstance(got[2], StreamStart) and got[2].objects == [("ns", "b", 12)]


def test_a_torn_last_line_is_skipped_and_a_damaged_middle_line_is_not(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with History(path) as h:
        h.add(Fault(name="x", targets=[], start=0.0))
    with path.open("ab") as f:
        f.write(b'{"record": "fau')
    assert len(list(read(path))) == 1
    with path.open("ab") as f:
        f.write(b"\n")
    with pytest.raises(Exception):  # noqa: B017 - msgspec's DecodeError
        list(read(path))


def test_classify() -> None:
    unavailable = StatusError("etcd lost quorum")
    unavailable.code = 503  # type: ignore[misc]
    assert classify(Conflict("x"))[0] == "failed"
    assert classify(unavailable)[:2] == ("unknown", 503)
    assert classify(ConnectionFailed("refused", retryable=True))[0] == "failed"
    assert classify(ConnectionFailed("reset after sending"))[0] == "unknown"
    assert classify(TimeoutError())[0] == "unknown"
