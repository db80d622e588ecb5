"""The indexed fan-out delivers exactly what a brute-force evaluation of every watcher would."""

from __future__ import annotations

import asyncio
import json
import random

from kos.api import codec
from kos.api.meta import ObjectMeta
from kos.api.resources import NETWORK_ATTACHMENTS
from kos.api.selectors import parse_field_selector, parse_label_selector
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, NetworkAttachmentStatus
from kos.apiserver.cache import Cacher
from kos.apiserver.registry import Registry, WatchOptions
from kos.apiserver.strategy import for_plural
from kos.storage.memory import MemoryStore
from kos.util.clock import REAL_CLOCK

NODES = ["n0", "n1", "n2", "n3"]
VNIS = [0, 5, 6, 7]
NAMESPACES = ["a", "b"]

SELECTORS = [
    ("", "", None),
    ("spec.node=n1", "", None),
    ("spec.node=n2,status.ipv4!=", "", None),
    ("spec.node!=n1,status.addressVNI=5,status.ipv4!=,status.hostIP!=", "", "a"),
    ("status.addressVNI=6", "", None),
    ("status.addressVNI!=6", "", None),
    ("status.ipv4=", "", "b"),
    ("", "tier=x", None),
    ("", "tier notin (x)", "a"),
    ("metadata.name=o3", "", "a"),
    ("spec.subnet=s1", "tier=y", None),
]


def random_object(rng: random.Random, ns: str, name: str) -> NetworkAttachment:
    vni = rng.choice(VNIS)
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace=ns, uid=f"{ns}-{name}", labels={"tier": rng.choice("xy")}),
        spec=NetworkAttachmentSpec(node=rng.choice(NODES), subnet=rng.choice(["s1", "s2"])),
        status=NetworkAttachmentStatus(
            ipv4=f"10.0.0.{rng.randrange(2, 9)}" if vni and rng.random() < 0.8 else "",
            address_vni=vni,
            host_ip=rng.choice(["", "192.0.2.1"]),
        ),
    )


def expected_type(fs: str, ls: str, ns: str | None, old: NetworkAttachment | None, new: NetworkAttachment | None,
                  deleted: bool) -> str | None:  # fmt: skip
    fsel, lsel = parse_field_selector(fs), parse_label_selector(ls)

    def match(o: NetworkAttachment | None) -> bool:
        if o is None:
            return False
        if ns and o.metadata.namespace != ns:
            return False
        return lsel.matches(o.metadata.labels) and fsel.matches(NETWORK_ATTACHMENTS.field_values(o))

    if deleted:
        return "DELETED" if match(old) else None
    now, before = match(new), match(old)
    if now:
        return "MODIFIED" if before else "ADDED"
    return "DELETED" if before else None


async def test_indexed_fanout_matches_brute_force() -> None:
    rng = random.Random(7)
    store = MemoryStore()
    cacher = Cacher(store, history=10_000)
    await cacher.start()
    reg = Registry(NETWORK_ATTACHMENTS, for_plural("networkattachments"), store, cacher, REAL_CLOCK)
    watchers = []
    for fs, ls, ns in SELECTORS:
        opts = WatchOptions(
            label_selector=parse_label_selector(ls), field_selector=parse_field_selector(fs), resource_version="0"
        )
        w = await reg.watch(ns, opts)
        watchers.append((fs, ls, ns, w))
    indexed = sum(1 for *_, w in watchers if w.index_field is not None)
    assert indexed >= 6  # most of these selectors are served from the index

    state: dict[str, tuple[NetworkAttachment, int]] = {}
    expected: list[list[tuple[str, str, str]]] = [[] for _ in watchers]
    for step in range(1500):
        ns, name = rng.choice(NAMESPACES), f"o{rng.randrange(12)}"
        key = f"/networkattachments/{ns}/{name}"
        old = state.get(key)
        if old is not None and rng.random() < 0.2:
            await store.delete(key)
            del state[key]
            new, deleted = None, True
        else:
            new = random_object(rng, ns, name)
            data = codec.encode(new)
            if old is None:
                rev = await store.create(key, data)
            else:
                rev = await store.update(key, data, old[1])
            state[key] = (new, rev)
            deleted = False
        for i, (fs, ls, wns, _) in enumerate(watchers):
            t = expected_type(fs, ls, wns, old[0] if old else None, new, deleted)
            if t is not None:
                expected[i].append((t, ns, name))
        if step % 50 == 0:
            await asyncio.sleep(0)
    await cacher.wait_for(await store.current_revision())
    for i, (fs, ls, ns, w) in enumerate(watchers):
        got = []
        for line in b"".join(w.buffer).splitlines():
            ev = json.loads(line)
            got.append((ev["type"], ev["object"]["metadata"]["namespace"], ev["object"]["metadata"]["name"]))
        assert got == expected[i], (fs, ls, ns)
    # each event is encoded once per event type (at most ADDED, MODIFIED and DELETED for selector transitions),
    # however many watchers receive it
    events = cacher.caches["networkattachments"].history
    assert all(len(ev._lines) <= 3 for ev in events)
    assert sum(len(w.buffer) for *_, w in watchers) > 3 * sum(len(ev._lines) for ev in events) / 2
    await cacher.stop()
