"""A real controller manager recovers when its apiserver comes back on a fresh store (kubernetes #91073).

`kos apiserver --storage memory://` is killed and started again on the same
port, once on a fresh store (which starts at the clock, above every revision
the old one reached) and once on a store started below the revision every
informer of the controller manager last saw. Before issue 10 each of them retried its
stale revision every 3 s forever (the 504 carried no `ResourceVersionTooLarge`
cause and the reflector relisted only after 410), so nothing created on the new
store was ever validated or addressed. Now they relist and serve the new store.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import IPLock, NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.client.rest import Client
from kos.testing.process import APIServerProcess, KosProcess, free_port
from kos.testing.wait import eventually

pytestmark = pytest.mark.system

NS = "restart"


def sn(name: str, vni: int) -> Subnet:
    return Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4=f"10.{vni % 256}.0.0/24"))


def na(name: str, subnet: str) -> NetworkAttachment:
    return NetworkAttachment(metadata=ObjectMeta(name=name, namespace=NS),
                             spec=NetworkAttachmentSpec(node="node-1", subnet=subnet))  # fmt: skip


INFORMERS = ("subnets", "networkattachments", "iplocks")


def logged_by_each_informer(log: Path, *phrases: str) -> bool:
    """Whether the controller manager's log has, for each of its informers, a line naming it with one of `phrases`."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if any(p in ln for p in phrases)]
    return all(any(name in ln for ln in lines) for name in INFORMERS)


async def addressed(client: Client, names: list[str]) -> bool:
    nas, _ = await client.list(NetworkAttachment, NS)
    got = {n.metadata.name for n in nas if n.status.ipv4}
    return set(names) <= got


@pytest.mark.parametrize("behind", [False, True], ids=["fresh-store", "store-behind-its-clients"])
async def test_controller_manager_recovers_after_the_apiserver_restarts_on_a_fresh_store(
    tmp_path: Path, behind: bool
) -> None:
    """`fresh-store`: a new memory:// store starts above every revision an earlier store reached (the clock), so
    the manager's revisions are compacted history there: 410, relist — even with attachments of the old store in
    its caches. `store-behind-its-clients` (`memory://?revision=1`, as an etcd restored from an old backup without
    `--bump-revision`): the manager's revisions are ahead of the store: 504 ResourceVersionTooLarge, relist."""
    port, cm_port = free_port(), free_port()
    server = APIServerProcess("memory://", tmp_path / "apiserver-1.log", port=port,
                              extra=["--log-level", "warning", "--bookmark-interval", "0.1"]).wait_ready()  # fmt: skip
    cm = KosProcess(["controller-manager", "--server", server.url, "--metrics-listen", f"127.0.0.1:{cm_port}",
                     "--insecure", "--log-level", "info"], tmp_path / "cm.log")  # fmt: skip
    try:
        cm.wait_http(f"http://127.0.0.1:{cm_port}/healthz")
        async with Client(server.url) as client:
            await client.create(sn("net", 300))
            names = [f"a{i}" for i in range(15)]
            for n in names:
                await client.create(na(n, "net"))
            await eventually(lambda: addressed(client, names), timeout=30, interval=0.1)
            if behind:
                # A store behind its clients cannot be told from the same store by revision alone: a manager
                # still believing in attachments of the old store would keep taking addresses for them in the
                # new one, a write storm that soon carries the new store past its stale revisions, which are then
                # accepted (Kubernetes has the same hole; hence etcd's --bump-revision). So they go first.
                for n in names:
                    await client.delete(NetworkAttachment, NS, n)

                async def no_locks() -> bool:
                    return not (await client.list(IPLock, NS))[0]

                await eventually(no_locks, timeout=30, interval=0.1)
            # No wait for the manager's informers to catch up (bookmarks) is needed: every revision they hold is
            # one of this store, which numbered from the clock at its start (`initial_revision`), so all of them
            # lie above the revisions of a store started at 1 and below those of a fresh store started later.
            _, stale = await client.list(Subnet, NS)

        server.kill()  # the store goes with it
        # barrier: the controller manager noticed that every one of its watches broke
        await eventually(lambda: logged_by_each_informer(cm.log_path, "connection closed"), timeout=30, interval=0.05)
        server = APIServerProcess("memory://?revision=1" if behind else "memory://", tmp_path / "apiserver-2.log",
                                  port=port, extra=["--log-level", "warning"]).wait_ready()  # fmt: skip
        t0 = time.monotonic()
        async with Client(server.url) as client:
            # the same objects again in the new store, and new ones
            created = await client.create(sn("net", 300))
            await client.create(sn("other", 301))
            again = ["a0", "a1", "b0"]
            for n, subnet in zip(again, ["net", "net", "other"], strict=True):
                await client.create(na(n, subnet))
            if behind:
                assert int(created.metadata.resource_version) < int(stale)
            else:
                assert int(created.metadata.resource_version) > int(stale)

            async def validated() -> bool:
                subnets, _ = await client.list(Subnet, NS)
                return len(subnets) == 2 and all(s.status.validated for s in subnets)

            await eventually(validated, timeout=30, interval=0.1)
            await eventually(lambda: addressed(client, again), timeout=30, interval=0.1)
            print(f"recovered {time.monotonic() - t0:.1f} s after the restart")
            # barrier: every informer of the manager has listed the new store (410 or 504, then a relist)
            await eventually(lambda: logged_by_each_informer(cm.log_path, "too old", "ahead of the server"),
                             timeout=30, interval=0.05)  # fmt: skip
            nas, _ = await client.list(NetworkAttachment, NS)
            assert sorted(n.metadata.name for n in nas) == sorted(again)  # nothing of the old store came back
        if behind:
            assert "is ahead of the server" in cm.log_path.read_text(errors="replace")
    finally:
        cm.stop()
        server.stop()
