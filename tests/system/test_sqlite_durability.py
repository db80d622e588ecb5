"""The embedded SQLite store: acknowledged writes survive SIGKILL of the server; one server per file."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

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
            # the change log survived too: a watch from before the crash replays every create
            seen = 0
            async for ev in api.watch(NA, {"resourceVersion": first_rv, "timeoutSeconds": "2"}):
                assert ev["type"] == "ADDED"
                seen += 1
            assert seen == len(stored)
    finally:
        server2.stop()


def test_one_server_per_file(tmp_path: Path) -> None:
    storage = f"sqlite://{tmp_path / 'state.db'}"
    server = APIServerProcess(storage, tmp_path / "a.log").wait_ready()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "kos", "apiserver", "--storage", storage, "--listen", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert second.returncode == 2
        assert "in use by another kos apiserver" in second.stderr and str(server.proc.pid) in second.stderr
    finally:
        server.stop()
