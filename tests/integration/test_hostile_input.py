"""Inputs that once stalled the event loop or grew memory: each gets a prompt 4xx while another client is served.

The server is a real `kos apiserver` process (module-scoped), so a stall shows up as
a bystander client waiting, not as this test's own event loop blocking. For each
hostile request the test requires the right 4xx within a liveness bound of 2 s
(the fixed code answers in milliseconds; the old code took 1.2 s for the issue's
selector key, 16 times that for the one below, and hours for the patch), every bystander
request within 2 s as well, and the server's resident memory to grow by less than
64 MiB (the patch below once asked for 2^40 list elements).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from kos.testing.wait import eventually

PREFIX = "/apis/network.example.com/v1alpha1"
SN = f"{PREFIX}/namespaces/hostile/subnets"
NA = f"{PREFIX}/namespaces/hostile/networkattachments"
LIVENESS = 2.0
MEMORY = 64 << 20
BACKTRACKING_KEY = "a" + ".a" * 26 + "-"  # the input had 22 ".a" (1.2 s); each one more doubled it


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def seeded(apiserver: Any, http: Any) -> Any:
    http.post(SN, {"apiVersion": "network.example.com/v1alpha1", "kind": "Subnet", "metadata": {"name": "s"},
                   "spec": {"vni": 77, "ipv4": "10.77.0.0/24"}})  # fmt: skip
    return apiserver


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _while_served(
    server: Any, session: aiohttp.ClientSession, method: str, path: str, body: Any = None,
    ctype: str = "application/json",
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """Send one hostile request while a bystander lists subnets on its own connection; check the bounds."""
    stop = asyncio.Event()
    worst = 0.0
    served = 0

    async def bystander() -> None:
        nonlocal worst, served
        async with aiohttp.ClientSession() as other:
            while not stop.is_set():
                t = time.perf_counter()
                async with other.get(server.url + SN) as r:
                    assert r.status == 200
                    await r.read()
                worst = max(worst, time.perf_counter() - t)
                served += 1
                await asyncio.sleep(0.01)  # pacing: a steady trickle of requests beside the hostile one

    rss_before = _rss(server.proc.pid)
    task = asyncio.create_task(bystander())
    await eventually(lambda: served >= 1)  # the bystander is being served
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    t0 = time.perf_counter()
    async with session.request(method, yarl.URL(server.url + path, encoded=True), data=data,
                               headers={"Content-Type": ctype}) as r:  # fmt: skip
        status, answer = r.status, await r.json()
    elapsed = time.perf_counter() - t0
    after = served
    await eventually(lambda: served > after)  # and still is, after the hostile request
    stop.set()
    await task
    grown = _rss(server.proc.pid) - rss_before
    assert elapsed < LIVENESS, f"{method} {path[:100]} took {elapsed:.2f}s"
    assert worst < LIVENESS, f"a bystander waited {worst:.2f}s"
    assert served >= 1
    assert grown < MEMORY, f"the server grew by {grown >> 20} MiB"
    return status, answer


def _q(selector: str) -> str:
    return urllib.parse.quote(selector, safe="")


@pytest.mark.parametrize(
    "selector",
    [BACKTRACKING_KEY, "a" + ".a" * 2000 + "-", f"example.com/{BACKTRACKING_KEY}", "x" * 60 + "/" + "a.-" * 500,
     f"{BACKTRACKING_KEY}=v", f"k in ({'a.' * 30}-)", "k=" + "a." * 30 + "-"],
    ids=["issue-key", "long-key", "prefixed", "long-prefix", "key-with-value", "set-value", "value"],
)  # fmt: skip
async def test_label_selectors_that_backtracked_are_refused_promptly(
    seeded: Any, session: aiohttp.ClientSession, selector: str
) -> None:
    for path in (f"{SN}?labelSelector={_q(selector)}", f"{SN}?watch=1&labelSelector={_q(selector)}"):
        status, answer = await _while_served(seeded, session, "GET", path)
        assert status == 400 and answer["reason"] == "BadRequest", answer
    status, answer = await _while_served(seeded, session, "DELETE", f"{SN}?labelSelector={_q(selector)}")
    assert status == 400, answer


def _attachment(name: str = "na", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "network.example.com/v1alpha1", "kind": "NetworkAttachment",
            "metadata": {"name": name, **meta}, "spec": {"node": "n1", "subnet": "s"}}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_attachment("a" + ".a" * 120 + "-"), "metadata.name"),
        (_attachment("a." * 300_000 + "-"), "metadata.name"),
        (_attachment(labels={BACKTRACKING_KEY: "v"}), "metadata.labels"),
        (_attachment(labels={"a" + ".a" * 60_000 + "-/k": "v"}), "metadata.labels"),
        (_attachment(annotations={"a-" * 100_000 + "/k": "v"}), "metadata.annotations"),
        (_attachment(finalizers=["a." * 100_000 + "-/f"]), "metadata.finalizers[0]"),
    ],
    ids=["dotted-name", "huge-name", "label-key", "huge-label-prefix", "annotation-key", "finalizer"],
)
async def test_names_and_keys_that_could_backtrack_are_refused_promptly(
    seeded: Any, session: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    status, answer = await _while_served(seeded, session, "POST", NA, body)
    assert status == 422, answer
    assert field in {c["field"] for c in answer["details"]["causes"]}, answer


async def test_a_doubling_json_patch_is_refused_promptly_in_bounded_memory(
    seeded: Any, session: aiohttp.ClientSession
) -> None:
    """The issue's 1.1 KB patch: add [0] at /spec/x, then copy /spec/x into /spec/x/- forty times."""
    ops = [{"op": "add", "path": "/spec/x", "value": [0]}] + [
        {"op": "copy", "from": "/spec/x", "path": "/spec/x/-"}
    ] * 40
    assert len(json.dumps(ops)) < 2500
    status, answer = await _while_served(seeded, session, "PATCH", f"{SN}/s", ops, "application/json-patch+json")
    assert status == 422 and "copies would add more than" in answer["message"], answer


async def test_ten_thousand_small_copies_are_refused_promptly(seeded: Any, session: aiohttp.ClientSession) -> None:
    ops = [{"op": "add", "path": "/metadata/annotations", "value": {"a": "x" * 200}}] + [
        {"op": "copy", "from": "/metadata/annotations/a", "path": f"/metadata/annotations/k{i}"} for i in range(9_999)
    ]
    status, answer = await _while_served(seeded, session, "PATCH", f"{SN}/s", ops, "application/json-patch+json")
    assert status == 422 and "copies would add more than" in answer["message"], answer


async def test_ten_thousand_and_one_operations_are_413(seeded: Any, session: aiohttp.ClientSession) -> None:
    ops = [{"op": "test", "path": "/spec/vni", "value": 77}] * 10_001
    status, answer = await _while_served(seeded, session, "PATCH", f"{SN}/s", ops, "application/json-patch+json")
    assert status == 413 and answer["reason"] == "RequestEntityTooLarge", answer


async def test_integers_of_thousands_of_digits_are_400(seeded: Any, session: aiohttp.ClientSession) -> None:
    for q in ("limit=", "timeoutSeconds=", "watch=1&timeoutSeconds=", "resourceVersion=", "watch=1&limit="):
        status, answer = await _while_served(seeded, session, "GET", f"{SN}?{q}{'9' * 5000}")
        assert status == 400 and answer["reason"] == "BadRequest", (q, answer)
