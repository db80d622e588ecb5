"""The chaos checker end to end on a real etcd behind two apiservers (issue 13, Deliver 6).

A small workload goes through `History.call` while two streams are recorded by `record_stream` through
failover clients; one apiserver stops mid-way, so the stream that used it resumes on the other from its last
revision. The store's history, read from etcd itself, must then explain every record: the checker passes.
The same records with one watch event removed report the gap, and with an acknowledged write's revision
changed report the lost write — the checker fails when the run was wrong.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import Subnet, SubnetSpec
from kos.chaos.checker import check
from kos.chaos.history import Call, History, StreamStart, WatchEvent
from kos.chaos.judge import judge
from kos.chaos.storehistory import read_store_history, store_revision
from kos.chaos.streams import record_stream
from kos.client.config import ClientConfig
from kos.client.rest import Client
from kos.storage.url import open_store
from kos.testing.etcd import EtcdProcess
from kos.testing.replicas import running_replicas
from kos.testing.wait import eventually

pytestmark = pytest.mark.etcd

NS = "chaos"
SUBNETS = "subnets"


def sn(name: str, vni: int, team: str) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS, labels={"team": team}),
                  spec=SubnetSpec(vni=vni, ipv4=f"10.{vni % 250}.0.0/24"))  # fmt: skip


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed")
    proc = EtcdProcess.start(tmp_path / "etcd")
    try:
        yield proc
    finally:
        proc.stop()


async def write(h: History, client: Client, op: str, obj: Subnet) -> Subnet:
    m = obj.metadata
    async with h.call(op, SUBNETS, m.namespace, m.name) as scope:
        if op == "create":
            got = await client.create(obj)
        elif op == "update":
            got = await client.update(obj)
        elif op == "update_status":
            got = await client.update_status(obj)
        else:
            got = await client.delete(Subnet, m.namespace, m.name)
        scope.ok(got.metadata.resource_version)
    return got


def seen(h: History, stream: int) -> int:
    """Object events stream `stream` has recorded so far."""
    return sum(1 for r in h.records if isinstance(r, WatchEvent) and r.stream == stream and r.type != "BOOKMARK")


async def test_a_run_over_two_apiservers_checks_clean_and_broken_records_do_not(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    storage = etcd.url + "/kos-chaos"
    async with running_replicas(2, storage) as servers:
        a, b = servers
        config_ab = ClientConfig.for_server(f"{a.url},{b.url}")
        config_ba = ClientConfig.for_server(f"{b.url},{a.url}")
        with History(tmp_path / "history.jsonl") as h:
            async with Client(config_ab) as writer, Client(config_ab) as on_a, Client(config_ba) as on_b:
                start = await store_revision(storage)
                stops = [asyncio.Event(), asyncio.Event()]
                tasks = [
                    asyncio.create_task(record_stream(on_a, h, Subnet, namespace=NS, stop=stops[0])),
                    asyncio.create_task(record_stream(on_b, h, Subnet, label_selector="team=red", stop=stops[1])),
                ]
                await eventually(lambda: sum(isinstance(r, StreamStart) for r in h.records) == 2)
                made = [await write(h, writer, "create", sn(f"s{i}", 100 + i, "red" if i % 2 else "blue"))
                        for i in range(6)]  # fmt: skip
                await write(h, writer, "update", msgspec.structs.replace(
                    made[1], metadata=msgspec.structs.replace(made[1].metadata, labels={"team": "blue"})))  # fmt: skip
                await write(h, writer, "update", msgspec.structs.replace(
                    made[2], metadata=msgspec.structs.replace(made[2].metadata, labels={"team": "red"})))  # fmt: skip
                await write(h, writer, "delete", made[3])
                await eventually(lambda: seen(h, 1) == 9)
                await a.stop()  # stream 1 (on a) is cut: it must resume on b without a relist
                late = [await write(h, writer, "create", sn(f"t{i}", 200 + i, "red")) for i in range(3)]
                await write(h, writer, "delete", made[5])
                status = msgspec.structs.replace(late[0], status=msgspec.structs.replace(late[0].status,
                                                                                         validated=True))  # fmt: skip
                await write(h, writer, "update_status", status)
                await eventually(lambda: seen(h, 1) == 14 and seen(h, 2) == 11, timeout=20)
                for s in stops:
                    s.set()
                await asyncio.gather(*tasks)
        records = list(h.records)
        verdict = await judge(records, storage, start, config_ab, settle=0.0)  # the end state too, on b

    assert verdict.ok, verdict.violations
    # another store's key in the same etcd after the run: the history read ends there, with no kos change in it
    other = await open_store(etcd.url + "/someone-else")
    try:
        beyond = await other.create("/subnets/x/y", b"{}")
    finally:
        await other.close()
    store = await read_store_history(storage, idle_timeout=0.5)
    assert store.end == beyond and store.events[-1].revision < beyond and store.first == 0
    assert check(records, store, start=start).ok
    streams = verdict.summary["streams"]
    assert streams[1]["relists"] == 1 and streams[1]["resumes"] >= 1  # cut, resumed, never relisted
    resumed = [r for r in records if isinstance(r, StreamStart) and r.stream == 1 and not r.relist]
    assert resumed and resumed[-1].server == b.url
    assert streams[1]["events"] == 6 + 2 + 1 + 3 + 1 + 1  # creates, updates, deletes, late creates, status
    assert verdict.summary["calls"]["create"] == {"ok": 9}

    # one event of stream 1 removed: the gap is found, at its revision
    events = [i for i, r in enumerate(records) if isinstance(r, WatchEvent) and r.stream == 1 and r.type != "BOOKMARK"]
    removed = records[events[3]]
    assert isinstance(removed, WatchEvent)
    gapped = records[: events[3]] + records[events[3] + 1 :]
    found = check(gapped, store, start=start).violations
    assert len(found) == 1 and "gap:" in found[0] and f"at revision {removed.resource_version}" in found[0], found

    # an acknowledged write's revision changed: the lost write is found
    i, c = next((i, r) for i, r in enumerate(records) if isinstance(r, Call) and r.op == "update")
    lost = list(records)
    lost[i] = msgspec.structs.replace(c, resource_version=c.resource_version + 1000)
    found = check(lost, store, start=start).violations
    assert found == [v for v in found if v.startswith(f"lost write: call #{c.id} update")] and len(found) == 1
