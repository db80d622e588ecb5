"""The embedded SQLite store: acknowledged writes survive SIGKILL of the server; one server per file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kos.storage.interface import EventType
from kos.storage.sqlite import SQLiteStore
from kos.testing.http import RawAPI, attachment
from kos.testing.process import APIServerProcess

NA = RawAPI.path("networkattachments", "ns")

pytestmark = pytest.mark.system


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    storage = f"sqlite://{db}"
    server = APIServerProcess(storage, tmp_path / "apiserver.log").wait_ready()
    acked: dict[str, str] = {}
    stop = asyncio.Event()

    async def writer(api: RawAPI, w: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"w{w}-{i}"
            try:
                r = await api.post(NA, attachment(name, f"node-{w}", "s"))
            except Exception:
                return  # the server died under us: this write was not acknowledged
            if r.status == 201:
                acked[name] = r.body["metadata"]["uid"]
            i += 1

    async with RawAPI(server.url) as api:
        before = await api.get(NA)
        first_rv = before.body["metadata"]["resourceVersion"]
        tasks = [asyncio.create_task(writer(api, w)) for w in range(16)]
        while len(acked) < 400:
            await asyncio.sleep(0.01)
        server.kill()  # SIGKILL in the middle of the stream of writes
        stop.set()
        await asyncio.gather(*tasks)
    assert server.proc.returncode == -9

    server2 = APIServerProcess(storage, tmp_path / "apiserver2.log").wait_ready()
    try:
        async with RawAPI(server2.url) as api:
            items = (await api.get(NA)).body["items"]
            stored = {i["metadata"]["name"]: i["metadata"]["uid"] for i in items}
            missing = [n for n in acked if n not in stored]
            assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
            assert all(stored[n] == uid for n, uid in acked.items())
            # the restarted server's watch cache starts at its own revision: a watch from before the crash is
            # told to list again (410, as kube-apiserver's cache answers), never served a partial history
            async for ev in api.watch(NA, {"resourceVersion": first_rv, "timeoutSeconds": "2"}):
                assert ev["type"] == "ERROR" and ev["object"]["code"] == 410
    finally:
        server2.stop()
    # the store's change log survived too: a watch on the store from before the crash replays every create
    store = await SQLiteStore.open(str(db))
    try:
        seen = []
        async for batch in store.watch("/networkattachments/", int(first_rv)):
            seen += batch
            if len(seen) >= len(stored):
                break
        assert [e.type for e in seen] == [EventType.ADDED] * len(stored)
        assert {e.key.rsplit("/", 1)[1] for e in seen} == set(stored)
    finally:
        await store.close()


def _second_server(storage: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kos", "apiserver", "--storage", storage, "--listen", "127.0.0.1:0", "--insecure"],
        capture_output=True, text=True, timeout=30, check=False, cwd=cwd,
    )  # fmt: skip


async def test_one_server_per_file_by_identity_not_spelling(tmp_path: Path) -> None:
    """A second server on the same file by any name is refused with one line and exit 2; no write is lost.

    Before issue 10 a second server on a hard link or a symbolic link started; with the hard link
    both kept their own -wal file of the same database and, after a restart, the first server's
    acknowledged writes were gone.
    """
    data = tmp_path / "data"
    db = data / "state.db"
    server = APIServerProcess(f"sqlite://{db}", tmp_path / "a.log").wait_ready()
    hard = data / "hard.db"
    spellings = {
        "same path": f"sqlite://{db}",
        "relative path": "sqlite://data/state.db",
        "dotted path": f"sqlite://{data}/../data/./state.db",
        "symbolic link": f"sqlite://{data / 'link.db'}",
        "hard link": f"sqlite://{hard}",
        "symbolic link to the directory": f"sqlite://{tmp_path / 'dirlink' / 'state.db'}",
    }
    (data / "link.db").symlink_to(db)
    (tmp_path / "dirlink").symlink_to(data, target_is_directory=True)
    acked: dict[str, str] = {}
    try:
        async with RawAPI(server.url) as api:
            for i in range(50):
                r = await api.post(NA, attachment(f"before-{i}", "node-1", "s"))
                assert r.status == 201
                acked[f"before-{i}"] = r.body["metadata"]["uid"]
            os.link(db, hard)
            for what, storage in spellings.items():
                second = _second_server(storage, tmp_path)
                lines = second.stderr.strip().splitlines()
                assert second.returncode == 2, (what, second.stderr)
                assert len(lines) == 1 and "in use by another kos apiserver" in lines[0], (what, second.stderr)
                assert f"pid {server.proc.pid}" in lines[0], (what, lines[0])
                r = await api.post(NA, attachment(f"after-{what.replace(' ', '-')}", "node-1", "s"))
                assert r.status == 201
                acked[r.body["metadata"]["name"]] = r.body["metadata"]["uid"]
        server.kill()  # a crash: the committed writes may still be in the -wal file only
        # two names for one database: refused even when nobody holds it, by either name
        for storage in (f"sqlite://{db}", f"sqlite://{hard}"):
            refused = _second_server(storage, tmp_path)
            assert refused.returncode == 2 and "hard links" in refused.stderr, refused.stderr
        hard.unlink()
        server = APIServerProcess(f"sqlite://{data / 'link.db'}", tmp_path / "b.log").wait_ready()
        async with RawAPI(server.url) as api:
            items = (await api.get(NA)).body["items"]
            stored = {i["metadata"]["name"]: i["metadata"]["uid"] for i in items}
        assert stored == acked
    finally:
        server.stop()
