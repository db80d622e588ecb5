"""No address is ever shown by two attachments, whatever is deleted, in whatever order (ARCHITECTURE §8.1).

Every test follows the NetworkAttachment stream from before its first write to after its last
(`kos.verify.history`), so "never" means at every revision, not only at the end. The paths:
a lock deleted by hand (once and twice, Whereabouts #207), with a full subnet and an NA waiting;
foreground deletion of an NA held by a finalizer (AWS VPC CNI #1091); background and orphan
deletion; subnet deletion and replacement; IPAM restarting; two IPAMs; an NA deleted and created
again under one name; and a seeded random mix of all of them with two IPAMs racing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kos.api import names
from kos.api.errors import AlreadyExists, Conflict, Invalid, NotFound
from kos.api.meta import ObjectMeta
from kos.api.types import IPLock, NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.apiserver.address_protection import IN_USE_FINALIZER
from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.controllers.ipam import RUN_OUT
from kos.controllers.manager import ControllerManager
from kos.testing.controllers import start_cm
from kos.testing.quiet import quiesced
from kos.testing.wait import eventually
from kos.verify.history import AddressHistory, follow
from kos.verify.invariants import address_violations, readiness_violations

NS = "addr"
HOLD = "example.com/hold"
VNI = 4242
LOCK = names.lock_name(VNI, "10.42.0.9")


@contextlib.asynccontextmanager
async def history(client: Client) -> AsyncIterator[AddressHistory]:
    """Follow every NA change from now; on exit, wait until the stream has caught up and check every revision."""
    nas, rv = await client.list(NetworkAttachment)
    h = AddressHistory(nas, rv)
    task = asyncio.create_task(follow(client, h))
    try:
        yield h

        async def caught_up() -> bool:  # the stream has delivered the last NA change a consistent list shows
            final, _ = await client.list(NetworkAttachment)
            want = {f"{n.metadata.namespace}/{n.metadata.name}": (n.status.address_vni, n.status.ipv4)
                    for n in final if n.status.ipv4}  # fmt: skip
            last = max((int(n.metadata.resource_version) for n in final), default=0)
            return int(h.revision or 0) >= last and h.shown == want

        await eventually(caught_up)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert h.violations == [], "\n".join(h.violations[:20])
    assert h.events > 0


def subnet(name: str = "s", ipv4: str = "10.42.0.9/32", vni: int = VNI) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4=ipv4))


def na(name: str, node: str = "node-0", subnet: str = "s", finalizers: tuple[str, ...] = ()) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS, finalizers=finalizers),
                             spec=NetworkAttachmentSpec(node=node, subnet=subnet))  # fmt: skip


async def get(client: Client, name: str) -> NetworkAttachment | None:
    try:
        return await client.get(NetworkAttachment, NS, name)
    except NotFound:
        return None


async def shows(client: Client, name: str, ip: str = "10.42.0.9") -> bool:
    x = await get(client, name)
    return x is not None and x.status.ipv4 == ip


async def waits(client: Client, name: str) -> bool:
    x = await get(client, name)
    return x is not None and not x.status.ipv4 and RUN_OUT in x.status.errors.ipam


async def settled(client: Client) -> None:
    """Quiescence: every invariant holds, including readiness (addresses where there are free ones)."""

    async def clean() -> bool:
        subnets, _ = await client.list(Subnet)
        nas, _ = await client.list(NetworkAttachment)
        locks, _ = await client.list(IPLock)
        problems = address_violations(nas, locks) + readiness_violations(nas, subnets, locks, require_implemented=False)
        return not problems and not any(lk.metadata.deletion_timestamp for lk in locks)

    await eventually(clean, timeout=20)


async def taken_again(client: Client, old_uid: str) -> bool:
    """The address's lock was deleted, and a new lock's owner shows the address."""
    try:
        lock = await client.get(IPLock, NS, LOCK)
    except NotFound:
        return False
    owner = lock.metadata.controller_ref()
    if lock.metadata.uid == old_uid or owner is None or lock.metadata.deletion_timestamp is not None:
        return False
    return await shows(client, owner.name)


async def holders(client: Client, ip: str = "10.42.0.9", vni: int = VNI) -> list[str]:
    nas, _ = await client.list(NetworkAttachment)
    return sorted(n.metadata.name for n in nas if n.status.ipv4 == ip and n.status.address_vni == vni)


async def remove_finalizer(client: Client, name: str, finalizer: str = HOLD) -> None:
    for _ in range(10):
        x = await get(client, name)
        if x is None or finalizer not in x.metadata.finalizers:
            return
        fins = [f for f in x.metadata.finalizers if f != finalizer]
        try:
            await client.patch(NetworkAttachment, NS, name, {"metadata": {"finalizers": fins,
                                                                          "resourceVersion": x.metadata.resource_version}})  # fmt: skip
            return
        except Conflict:
            continue


# --- the reported inputs ------------------------------------------------------------------------


async def test_a_lock_deleted_twice_by_hand_with_a_waiter(
    server: APIServer, client: Client, cm: ControllerManager
) -> None:
    """Whereabouts #207 on a /32: today x and yy both end Ready with 10.42.0.9. Right: one holder."""
    async with history(client):
        await client.create(subnet())
        await client.create(na("x", "node-0"))
        await eventually(lambda: shows(client, "x"))
        first = (await client.get(IPLock, NS, LOCK)).metadata.uid
        deleted = await client.delete(IPLock, NS, LOCK)
        # x shows the address, so the lock stays (its name keeps the address taken) until x lets go of it
        assert deleted.metadata.deletion_timestamp is not None and IN_USE_FINALIZER in deleted.metadata.finalizers

        async def relocked() -> bool:
            x = await get(client, "x")
            return x is not None and x.status.ipv4 == "10.42.0.9" and x.status.lock_uid not in ("", first)

        await eventually(relocked)  # x let go, the lock went, and x (the only one asking) took the address again
        await client.create(na("yy", "node-1"))
        await eventually(lambda: waits(client, "yy"))
        second = (await client.get(IPLock, NS, LOCK)).metadata.uid
        await client.delete(IPLock, NS, LOCK)
        await eventually(lambda: taken_again(client, second))
        await settled(client)
        one = await holders(client)
        assert len(one) == 1
        other = "yy" if one == ["x"] else "x"
        await eventually(lambda: waits(client, other))
        await quiesced(server, cm.controllers)  # the controllers have seen everything and have nothing left to do
        assert await holders(client) == one  # so it stays that way


async def test_a_lock_deleted_by_hand_in_a_full_subnet_with_a_waiter(client: Client, cm: ControllerManager) -> None:
    async with history(client):
        await client.create(subnet(ipv4="10.42.0.8/29"))
        for i in range(5):  # a /29 has five assignable addresses (network, gateway and broadcast are skipped)
            await client.create(na(f"a{i}", f"node-{i}"))
        nas: list[NetworkAttachment] = []

        async def all_addressed() -> bool:
            nonlocal nas
            nas, _ = await client.list(NetworkAttachment, NS)
            return len(nas) == 5 and all(n.status.ipv4 for n in nas)

        await eventually(all_addressed)
        await client.create(na("w", "node-9"))
        await eventually(lambda: waits(client, "w"))
        victim = nas[3]
        await client.delete(IPLock, NS, names.lock_name(VNI, victim.status.ipv4))
        await settled(client)
        final, _ = await client.list(NetworkAttachment, NS)
        assert sorted(n.status.ipv4 for n in final if n.status.ipv4) == sorted(n.status.ipv4 for n in nas)


async def test_foreground_deletion_of_an_attachment_held_by_a_finalizer(client: Client, cm: ControllerManager) -> None:
    """AWS VPC CNI #1091: the GC deleted d's lock while d still showed the address, and e got it at once."""
    async with history(client):
        await client.create(subnet())
        await client.create(na("d", "node-0", finalizers=(HOLD,)))
        await eventually(lambda: shows(client, "d"))
        await client.create(na("e", "node-1"))
        await eventually(lambda: waits(client, "e"))
        await client.delete(NetworkAttachment, NS, "d", propagation_policy="Foreground")
        await eventually(lambda: shows(client, "e"))
        d = await get(client, "d")
        assert d is not None and d.metadata.deletion_timestamp is not None and not d.status.ipv4
        assert d.metadata.finalizers == (HOLD,)  # the foreground deletion finished: only the user's finalizer is left
        await remove_finalizer(client, "d")
        await eventually(lambda: _gone(client, "d"))
        await settled(client)


async def _gone(client: Client, name: str) -> bool:
    return await get(client, name) is None


async def test_background_deletion_waits_for_a_finalizer(
    server: APIServer, client: Client, cm: ControllerManager
) -> None:
    """A terminating attachment keeps its address (and its lock) until it is really gone."""
    async with history(client):
        await client.create(subnet())
        await client.create(na("d", "node-0", finalizers=(HOLD,)))
        await eventually(lambda: shows(client, "d"))
        await client.create(na("e", "node-1"))
        await eventually(lambda: waits(client, "e"))
        await client.delete(NetworkAttachment, NS, "d")
        await quiesced(server, cm.controllers)
        assert await shows(client, "d") and await waits(client, "e")
        await remove_finalizer(client, "d")
        await eventually(lambda: shows(client, "e"))
        await settled(client)


async def test_orphan_deletion_leaves_the_address_held_by_an_ownerless_lock(
    server: APIServer, client: Client, cm: ControllerManager
) -> None:
    async with history(client):
        await client.create(subnet())
        await client.create(na("d", "node-0", finalizers=(HOLD,)))
        await eventually(lambda: shows(client, "d"))
        await client.create(na("e", "node-1"))
        await eventually(lambda: waits(client, "e"))
        await client.delete(NetworkAttachment, NS, "d", propagation_policy="Orphan")

        async def orphaned() -> bool:
            lock = await client.get(IPLock, NS, LOCK)
            return not lock.metadata.owner_references

        await eventually(orphaned)
        await eventually(lambda: _cleared(client, "d"))  # d no longer controls the lock: it must not show it
        await quiesced(server, cm.controllers)
        assert await waits(client, "e")  # the ownerless lock still holds the address
        subnets, _ = await client.list(Subnet)
        nas, _ = await client.list(NetworkAttachment)
        locks, _ = await client.list(IPLock)
        # not "e has no address although the subnet has free addresses": the ownerless lock holds the only one
        assert readiness_violations(nas, subnets, locks, require_implemented=False) == []
        await client.delete(IPLock, NS, LOCK)
        await eventually(lambda: shows(client, "e"))
        await remove_finalizer(client, "d")
        await settled(client)


async def _cleared(client: Client, name: str) -> bool:
    x = await get(client, name)
    return x is not None and not x.status.ipv4


async def test_removing_the_protection_by_hand_is_refused(client: Client, cm: ControllerManager) -> None:
    async with history(client):
        await client.create(subnet())
        await cm.stop()  # no IPAM: nothing moves x off the address
        x = await client.create(na("x"))
        lock = await client.create(IPLock(
            metadata=ObjectMeta(name=LOCK, namespace=NS, owner_references=(
                _owner(x),)), spec=_lock_spec()))  # fmt: skip
        await client.patch(NetworkAttachment, NS, "x", {"status": {"ipv4": "10.42.0.9", "addressVNI": VNI,
                                                                   "lockUID": lock.metadata.uid}}, subresource="status")  # fmt: skip
        gone = await client.delete(IPLock, NS, LOCK)
        assert IN_USE_FINALIZER in gone.metadata.finalizers
        with pytest.raises(Invalid) as e:
            await client.patch(IPLock, NS, LOCK, {"metadata": {"finalizers": None}})
        assert "x shows 10.42.0.9" in e.value.message
        # a status naming a lock that is being deleted is refused too
        with pytest.raises(Conflict):
            await client.patch(NetworkAttachment, NS, "x", {"status": {"lockUID": "other"}}, subresource="status")
        await client.patch(NetworkAttachment, NS, "x", {"status": {"ipv4": None, "lockUID": None}},
                           subresource="status")  # fmt: skip

        async def lock_gone() -> bool:
            try:
                await client.get(IPLock, NS, LOCK)
            except NotFound:
                return True
            return False

        await eventually(lock_gone)


def _owner(x: NetworkAttachment) -> Any:
    from kos.api.meta import OwnerReference
    from kos.api.types import API_VERSION

    return OwnerReference(api_version=API_VERSION, kind="NetworkAttachment", name=x.metadata.name,
                          uid=x.metadata.uid, controller=True, block_owner_deletion=True)  # fmt: skip


def _lock_spec() -> Any:
    from kos.api.types import IPLockSpec

    return IPLockSpec(subnet_name="s")


async def test_subnet_deleted_and_replaced(client: Client, cm: ControllerManager) -> None:
    async with history(client):
        await client.create(subnet(ipv4="10.42.0.8/29"))
        for i in range(8):
            await client.create(na(f"a{i}", f"node-{i}"))
        await eventually(lambda: _addressed(client, 5))
        await client.delete(Subnet, NS, "s")
        await eventually(lambda: _addressed(client, 0))
        await client.create(subnet(ipv4="10.43.0.0/29", vni=VNI + 1))
        await eventually(lambda: _addressed(client, 5))
        await client.delete(Subnet, NS, "s")
        await client.create(subnet(ipv4="10.42.0.8/29"))
        await settled(client)


async def _addressed(client: Client, n: int) -> bool:
    nas, _ = await client.list(NetworkAttachment, NS)
    return sum(1 for x in nas if x.status.ipv4) == n


async def test_deleted_and_created_again_under_one_name(client: Client, cm: ControllerManager) -> None:
    async with history(client):
        await client.create(subnet(ipv4="10.42.0.8/30"))  # four addresses, six attachments
        for i in range(6):
            await client.create(na(f"a{i}", f"node-{i}"))
        for _ in range(15):
            i = random.Random(_).randrange(6)
            with contextlib.suppress(NotFound):
                await client.delete(NetworkAttachment, NS, f"a{i}")
            with contextlib.suppress(AlreadyExists):
                await client.create(na(f"a{i}", f"node-{i}"))
            await asyncio.sleep(0.02)  # pacing, not synchronisation: the controllers get to act between steps
        await settled(client)


# --- every deletion path at once, two IPAMs racing, several seeds ---------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_deletion_path_with_two_ipams(server: APIServer, client: Client, seed: int) -> None:
    rng = random.Random(seed)
    cms = [await start_cm(server, seed), await start_cm(server, seed)]  # same seed: they pick alike and collide
    pool = [f"n{i}" for i in range(14)]
    try:
        async with history(client):
            await client.create(subnet("s", "10.42.0.8/29"))
            await client.create(subnet("t", "10.42.0.16/30"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 4.0
            ops = 0
            while loop.time() < deadline:
                ops += 1
                await _random_step(client, server, rng, pool, cms, seed)
                await asyncio.sleep(rng.random() * 0.01)  # random pacing between the racing steps
            assert ops > 100
            for name in pool:  # let every held attachment go, then let the system settle
                await remove_finalizer(client, name)
            for sn, block in (("s", "10.42.0.8/29"), ("t", "10.42.0.16/30")):
                with contextlib.suppress(AlreadyExists):
                    await client.create(subnet(sn, block))
            with contextlib.suppress(AlreadyExists):
                await client.create(na("last", "node-0", "t"))
            await settled(client)

            async def addressed() -> bool:  # settled() holds vacuously while a re-created subnet is unvalidated
                nas, _ = await client.list(NetworkAttachment, NS)
                return any(n.status.ipv4 for n in nas)

            await eventually(addressed, timeout=20)
            await settled(client)
    finally:
        for c in cms:
            await c.stop()


async def _random_step(
    client: Client, server: APIServer, rng: random.Random, pool: list[str], cms: list[ControllerManager], seed: int
) -> None:
    r = rng.random()
    name = rng.choice(pool)
    try:
        if r < 0.40:
            fins = (HOLD,) if rng.random() < 0.3 else ()
            await client.create(na(name, f"node-{rng.randrange(4)}", rng.choice(["s", "s", "t"]), fins))
        elif r < 0.62:
            policy = rng.choice(["Background", "Foreground", "Orphan", None])
            await client.delete(NetworkAttachment, NS, name, propagation_policy=policy)
        elif r < 0.72:
            await remove_finalizer(client, name)
        elif r < 0.86:
            locks, _ = await client.list(IPLock, NS)
            if locks:
                await client.delete(IPLock, NS, rng.choice(locks).metadata.name)
        elif r < 0.92:
            sn = rng.choice(["s", "t"])
            if rng.random() < 0.5:
                await client.delete(Subnet, NS, sn)
            else:
                await client.create(subnet(sn, "10.42.0.8/29" if sn == "s" else "10.42.0.16/30"))
        elif r < 0.94:
            i = rng.randrange(len(cms))  # an IPAM restarts
            await cms[i].stop()
            cms[i] = await start_cm(server, seed + 100 + rng.randrange(100))
    except (AlreadyExists, NotFound, Conflict):
        pass


async def test_a_deletion_whose_guard_fails_is_judged_again(server: APIServer, client: Client) -> None:
    """A guard that fails because this server's cache lags the store is a lost race, retried from a cache that has
    caught up — not "storage is unavailable"."""
    from kos.api import codec
    from kos.apiserver.registry import DeleteRequest

    await client.create(subnet())
    x = await client.create(na("x"))
    await client.create(IPLock(metadata=ObjectMeta(name=LOCK, namespace=NS, owner_references=(_owner(x),)),
                               spec=_lock_spec()))  # fmt: skip
    cacher = server.cacher
    assert cacher is not None
    await cacher.sync()
    nas = server.registries["networkattachments"]
    cached = nas.cache.get(f"{NS}/x")
    assert cached is not None
    # another server's write of x, which this server's cache has not applied yet (nothing yields in between)
    relabelled = codec.replace_meta(cached.obj, resource_version="", labels={"moved": "on"})
    await server.store.update(nas.key(NS, "x"), codec.encode(relabelled), cached.rev)
    assert nas.cache.get(f"{NS}/x") is cached
    _, gone = await server.registries["iplocks"].delete(NS, LOCK, DeleteRequest(), from_cache=True)
    assert gone


async def test_a_holder_in_another_namespace_does_not_hold_a_lock(client: Client) -> None:
    """Locks and the attachments that show their addresses are matched within a namespace: an NA of another
    namespace showing the same VNI and address neither keeps the lock nor, when it lets go, is needed to free it."""
    other = NetworkAttachment(metadata=ObjectMeta(name="y", namespace="ns2"),
                              spec=NetworkAttachmentSpec(node="n", subnet="s"))  # fmt: skip
    y = await client.create(other)
    lock_y = await client.create(IPLock(
        metadata=ObjectMeta(name=LOCK, namespace="ns2", owner_references=(_owner(y),)), spec=_lock_spec()))  # fmt: skip
    await client.patch(NetworkAttachment, "ns2", "y", {"status": {"ipv4": "10.42.0.9", "addressVNI": VNI,
                                                                  "lockUID": lock_y.metadata.uid}},
                       subresource="status")  # fmt: skip
    await client.create(IPLock(metadata=ObjectMeta(name=LOCK, namespace=NS), spec=_lock_spec()))  # ownerless
    gone = await client.delete(IPLock, NS, LOCK)
    assert gone.metadata.deletion_timestamp is None  # deleted at once: nobody in its namespace shows the address
    with pytest.raises(NotFound):
        await client.get(IPLock, NS, LOCK)


async def test_a_failed_completion_is_tried_again(server: APIServer, client: Client, cm: ControllerManager) -> None:
    """The protection controller looks again after a failure (here: storage unavailable once) instead of dropping
    the lock, which would keep its address taken until a restart."""
    from kos.api.errors import ServiceUnavailable

    protection = server.protection
    assert protection is not None
    real = protection.registry.guaranteed_update
    failures = []

    async def flaky(*args: Any, **kw: Any) -> Any:
        if not failures:
            failures.append(1)
            raise ServiceUnavailable("storage is unavailable: injected")
        return await real(*args, **kw)

    protection.registry.guaranteed_update = flaky  # type: ignore[method-assign]
    async with history(client):
        await client.create(subnet())
        await client.create(na("x"))
        await eventually(lambda: shows(client, "x"))
        first = (await client.get(IPLock, NS, LOCK)).metadata.uid
        await client.delete(IPLock, NS, LOCK)

        async def relocked() -> bool:
            x = await get(client, "x")
            return x is not None and x.status.ipv4 == "10.42.0.9" and x.status.lock_uid not in ("", first)

        await eventually(relocked)
        assert failures == [1]


@pytest.mark.parametrize("edit", ["drop", "to-waiter", "not-controller"])
async def test_a_lock_given_away_by_hand_is_let_go(
    server: APIServer, client: Client, cm: ControllerManager, edit: str
) -> None:
    """Editing a lock's owner references (dropping them, pointing them at another NA, or making them not the
    controller) takes the address from x: IPAM moves x off it, and the address has one holder at every revision."""
    async with history(client):
        await client.create(subnet())
        await client.create(na("x"))
        await eventually(lambda: shows(client, "x"))
        yy = await client.create(na("yy", "node-1"))
        await eventually(lambda: waits(client, "yy"))
        lock = await client.get(IPLock, NS, LOCK)
        refs: list[Any] = []
        if edit == "to-waiter":
            refs = [{"apiVersion": "network.example.com/v1alpha1", "kind": "NetworkAttachment", "name": "yy",
                     "uid": yy.metadata.uid, "controller": True}]  # fmt: skip
        elif edit == "not-controller":
            ref = lock.metadata.owner_references[0]
            refs = [{"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name, "uid": ref.uid}]
        await client.patch(IPLock, NS, LOCK, {"metadata": {"ownerReferences": refs}})
        await eventually(lambda: _cleared(client, "x"))
        if edit == "to-waiter":  # the lock now backs yy: IPAM writes it into yy's status
            await eventually(lambda: shows(client, "yy"))
        await quiesced(server, cm.controllers)
        assert len(await holders(client)) <= 1
