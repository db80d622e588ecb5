"""Kubernetes object semantics over real HTTP: CRUD, status subresource, write stamps, concurrency, GC, lists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kos.api.errors import Conflict
from kos.apiserver.server import APIServer
from kos.testing.apiserver import running_apiserver
from kos.testing.http import RawAPI, attachment, iplock, subnet
from kos.testing.quiet import collected
from kos.testing.wait import eventually

NS = "tenant-a"


@pytest.fixture
async def api(server: APIServer) -> AsyncIterator[RawAPI]:
    async with RawAPI(server.url) as a:
        yield a


SN = RawAPI.path("subnets", NS)
NA = RawAPI.path("networkattachments", NS)
IPL = RawAPI.path("iplocks", NS)


def writes(obj: dict[str, Any]) -> dict[str, str]:
    return {w["section"]: w["serverTime"] for w in obj["extendedMetadata"]["writes"]}


async def test_create_get_list_delete(api: RawAPI) -> None:
    r = await api.post(SN, subnet("s1", 10, "10.1.0.0/24", labels={"app": "x"}))
    assert r.status == 201, r.body
    obj = r.body
    meta = obj["metadata"]
    assert meta["namespace"] == NS and meta["uid"] and meta["generation"] == 1 and meta["creationTimestamp"]
    assert obj["status"] == {} and list(writes(obj)) == ["spec"]
    got = await api.get(SN + "/s1")
    assert got.status == 200 and got.body == obj
    lst = await api.get(SN)
    assert lst.body["kind"] == "SubnetList" and [i["metadata"]["name"] for i in lst.body["items"]] == ["s1"]
    assert int(lst.body["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    again = await api.post(SN, subnet("s1", 11, "10.2.0.0/24"))
    assert again.status == 409 and again.body["reason"] == "AlreadyExists"
    d = await api.delete(SN + "/s1")
    assert d.status == 200 and d.body["metadata"]["name"] == "s1"
    assert int(d.body["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert (await api.get(SN + "/s1")).status == 404
    assert (await api.delete(SN + "/s1")).status == 404


async def test_generate_name(api: RawAPI) -> None:
    body = subnet("", 10, "10.1.0.0/24")
    body["metadata"] = {"generateName": "sn-"}
    r = await api.post(SN, body)
    assert r.status == 201, r.body
    name = r.body["metadata"]["name"]
    assert name.startswith("sn-") and len(name) == 8


async def test_clients_cannot_forge_server_fields(api: RawAPI) -> None:
    body = subnet("s1", 10, "10.1.0.0/24")
    body["extendedMetadata"] = {"writes": [{"section": "spec", "serverTime": "2000-01-01T00:00:00.000000Z"}]}
    body["status"] = {"validated": True}
    body["metadata"].update(uid="forged", resourceVersion="77", generation=9, creationTimestamp="2000-01-01T00:00:00Z")
    r = await api.post(SN, body)
    assert r.status == 201, r.body
    o = r.body
    assert o["status"] == {} and o["metadata"]["uid"] != "forged" and o["metadata"]["generation"] == 1
    assert not writes(o)["spec"].startswith("2000") and not o["metadata"]["creationTimestamp"].startswith("2000")
    # a main-resource update cannot change status or writes either
    o["status"] = {"validated": True}
    o["extendedMetadata"]["writes"] = []
    o["metadata"]["labels"] = {"changed": "yes"}
    u = await api.put(SN + "/s1", o)
    assert u.status == 200, u.body
    assert (
        u.body["status"] == {}
        and list(writes(u.body)) == ["spec"]
        and u.body["metadata"]["labels"] == {"changed": "yes"}
    )
    assert u.body["metadata"]["generation"] == 1  # metadata changes do not bump generation


async def test_subnet_status_subresource_and_stamps(api: RawAPI) -> None:
    o = (await api.post(SN, subnet("s1", 10, "10.1.0.0/24"))).body
    o["status"] = {"validated": True}
    o["spec"]["vni"] = 99  # ignored by a status update
    o["metadata"]["labels"] = {"ignored": "yes"}  # ignored too
    r = await api.put(SN + "/s1/status", o)
    assert r.status == 200, r.body
    assert r.body["status"] == {"validated": True} and r.body["spec"]["vni"] == 10
    assert "labels" not in r.body["metadata"]
    w = writes(r.body)
    assert list(w) == ["status", "spec"]  # the newest stamp first
    # the same status again: no write, same resourceVersion
    again = await api.put(SN + "/s1/status", r.body)
    assert again.status == 200 and again.body["metadata"]["resourceVersion"] == r.body["metadata"]["resourceVersion"]
    # a status update needs no resourceVersion
    r.body["metadata"].pop("resourceVersion")
    r.body["status"] = {"errors": ["CIDR overlaps with x/y's (10.0.0.0/8)"]}
    r2 = await api.put(SN + "/s1/status", r.body)
    assert r2.status == 200 and r2.body["status"]["errors"] and writes(r2.body)["status"] > w["status"]


async def test_network_attachment_status_sections(api: RawAPI) -> None:
    o = (await api.post(NA, attachment("a1", "node-1", "s1"))).body
    assert list(writes(o)) == ["spec"]
    r = await api.give_address(NA + "/a1", "10.1.0.2", 10)
    assert list(writes(r.body)) == ["status.address", "spec"]
    r.body["status"].update(macAddress="02:00:00:00:00:01", ifcName="kos020000000001", hostIP="192.0.2.1")
    r2 = await api.put(NA + "/a1/status", r.body)
    assert list(writes(r2.body)) == ["status.impl", "status.address", "spec"]
    assert writes(r2.body)["status.address"] == writes(r.body)["status.address"]
    r2.body["status"]["postCreateExecReport"] = {"command": ["/bin/true"], "exitStatus": 0, "stdOut": "", "stdErr": ""}
    r3 = await api.put(NA + "/a1/status", r2.body)
    assert next(iter(writes(r3.body))) == "status.execReport"
    # a report that differs only in the command is equivalent: no new stamp, no write
    r3.body["status"]["postCreateExecReport"]["command"] = ["/bin/other"]
    r4 = await api.put(NA + "/a1/status", r3.body)
    assert writes(r4.body)["status.execReport"] == writes(r3.body)["status.execReport"]
    # spec.postDeleteExec is the one mutable spec field: it stamps spec and bumps generation
    r4.body["spec"]["postDeleteExec"] = ["/bin/cleanup"]
    r5 = await api.put(NA + "/a1", r4.body)
    assert r5.status == 200, r5.body
    assert r5.body["metadata"]["generation"] == 2 and next(iter(writes(r5.body))) == "spec"
    assert r5.body["status"]["ipv4"] == "10.1.0.2"  # the main resource kept the status
    r5.body["spec"]["node"] = "node-2"
    bad = await api.put(NA + "/a1", r5.body)
    assert bad.status == 422 and bad.body["details"]["causes"][0]["field"] == "spec.node"


async def test_optimistic_concurrency(api: RawAPI) -> None:
    o = (await api.post(NA, attachment("a1", "node-1", "s1"))).body
    stale = dict(o, metadata=dict(o["metadata"]))
    o["metadata"]["labels"] = {"v": "1"}
    assert (await api.put(NA + "/a1", o)).status == 200
    stale["metadata"]["labels"] = {"v": "2"}
    c = await api.put(NA + "/a1", stale)
    assert c.status == 409 and c.body["reason"] == "Conflict"
    assert "the object has been modified" in c.body["message"]
    del stale["metadata"]["resourceVersion"]
    missing = await api.put(NA + "/a1", stale)
    assert missing.status == 422 and missing.body["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    assert (await api.get(NA + "/a1")).body["metadata"]["labels"] == {"v": "1"}
    # PUT cannot create
    assert (await api.put(NA + "/nope", dict(o, metadata={"name": "nope", "resourceVersion": "1"}))).status == 404


async def test_concurrent_unconditional_patches_all_apply(api: RawAPI) -> None:
    await api.post(NA, attachment("a1", "node-1", "s1"))
    rs = await asyncio.gather(*(api.patch(NA + "/a1", {"metadata": {"labels": {f"k{i}": "v"}}}) for i in range(30)))
    assert all(r.status == 200 for r in rs)
    labels = (await api.get(NA + "/a1")).body["metadata"]["labels"]
    assert len(labels) == 30


async def test_patch_with_resource_version_precondition(api: RawAPI) -> None:
    o = (await api.post(NA, attachment("a1", "node-1", "s1"))).body
    ok = await api.patch(
        NA + "/a1", {"metadata": {"resourceVersion": o["metadata"]["resourceVersion"], "labels": {"a": "b"}}}
    )
    assert ok.status == 200
    stale = await api.patch(
        NA + "/a1", {"metadata": {"resourceVersion": o["metadata"]["resourceVersion"], "labels": {"a": "c"}}}
    )
    assert stale.status == 409
    jp = await api.patch(NA + "/a1", [{"op": "add", "path": "/metadata/labels/x", "value": "y"}], kind="json")
    assert jp.status == 200 and jp.body["metadata"]["labels"] == {"a": "b", "x": "y"}
    st = await api.give_address(NA + "/a1", "10.0.0.9", 0)
    assert st.status == 200 and st.body["status"]["ipv4"] == "10.0.0.9"
    assert next(iter(writes(st.body))) == "status.address"


async def test_selectors(api: RawAPI) -> None:
    for i in range(6):
        await api.post(NA, attachment(f"a{i}", f"node-{i % 2}", "s1", labels={"parity": str(i % 2)}))
    await api.post(RawAPI.path("networkattachments", "other"), attachment("b0", "node-0", "s1"))
    for i in (0, 1):
        await api.give_address(NA + f"/a{i}", f"10.0.0.{i + 2}", 7)

    async def names(path: str, **params: str) -> list[str]:
        r = await api.get(path, params=params)
        assert r.status == 200, r.body
        return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in r.body["items"]]

    every = RawAPI.path("networkattachments")
    assert await names(every, fieldSelector="spec.node=node-0") == ["other/b0", f"{NS}/a0", f"{NS}/a2", f"{NS}/a4"]
    assert await names(NA, fieldSelector="spec.node=node-0") == [f"{NS}/a0", f"{NS}/a2", f"{NS}/a4"]
    assert await names(every, fieldSelector="spec.node==node-0,status.ipv4!=") == [f"{NS}/a0"]
    assert await names(every, fieldSelector="status.addressVNI=7") == [f"{NS}/a0", f"{NS}/a1"]
    assert await names(every, fieldSelector="status.addressVNI=0") == [
        "other/b0",
        f"{NS}/a2",
        f"{NS}/a3",
        f"{NS}/a4",
        f"{NS}/a5",
    ]
    assert await names(NA, labelSelector="parity=1") == [f"{NS}/a1", f"{NS}/a3", f"{NS}/a5"]
    assert await names(NA, labelSelector="parity in (1),!nothing", fieldSelector="metadata.name!=a3") == [
        f"{NS}/a1",
        f"{NS}/a5",
    ]
    assert await names(every, fieldSelector="metadata.namespace=other") == ["other/b0"]


async def test_pagination_is_consistent_across_writes(api: RawAPI) -> None:
    for i in range(10):
        await api.post(NA, attachment(f"a{i:02d}", "n", "s"))
    p1 = await api.get(NA, params={"limit": "4"})
    assert [i["metadata"]["name"] for i in p1.body["items"]] == ["a00", "a01", "a02", "a03"]
    assert p1.body["metadata"]["remainingItemCount"] == 6
    token = p1.body["metadata"]["continue"]
    # writes between pages do not show in the remaining pages
    await api.delete(NA + "/a05")
    await api.post(NA, attachment("a045", "n", "s"))
    await api.patch(NA + "/a06", {"metadata": {"labels": {"late": "x"}}})
    p2 = await api.get(NA, params={"limit": "4", "continue": token})
    assert [i["metadata"]["name"] for i in p2.body["items"]] == ["a04", "a05", "a06", "a07"]
    assert "labels" not in p2.body["items"][2]["metadata"]
    assert p2.body["metadata"]["resourceVersion"] == p1.body["metadata"]["resourceVersion"]
    p3 = await api.get(NA, params={"limit": "4", "continue": p2.body["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in p3.body["items"]] == ["a08", "a09"] and not p3.body["metadata"].get(
        "continue"
    )
    exact = await api.get(
        NA, params={"resourceVersion": p1.body["metadata"]["resourceVersion"], "resourceVersionMatch": "Exact"}
    )
    assert len(exact.body["items"]) == 10 and "a045" not in [i["metadata"]["name"] for i in exact.body["items"]]


async def test_list_without_resource_version_sees_every_acknowledged_write(api: RawAPI) -> None:
    for i in range(50):
        r = await api.post(NA, attachment(f"a{i}", "n", "s"))
        lst = await api.get(NA, params={"fieldSelector": f"metadata.name=a{i}"})
        assert [x["metadata"]["name"] for x in lst.body["items"]] == [f"a{i}"]
        assert int(lst.body["metadata"]["resourceVersion"]) >= int(r.body["metadata"]["resourceVersion"])


async def test_finalizers_hold_deletion(api: RawAPI) -> None:
    body = attachment("a1", "n", "s", finalizers=["example.com/hold"])
    await api.post(NA, body)
    d = await api.delete(NA + "/a1")
    assert d.status == 202 and d.body["metadata"]["deletionTimestamp"]
    still = await api.get(NA + "/a1")
    assert still.status == 200 and still.body["metadata"]["deletionTimestamp"]
    r = await api.patch(NA + "/a1", {"metadata": {"finalizers": None}})
    assert r.status == 200
    assert (await api.get(NA + "/a1")).status == 404


async def test_no_new_finalizers_once_deleting(api: RawAPI) -> None:
    """kubernetes #32339: once deletion has started, finalizers can be removed but not added (422).

    PUT, merge patch and JSON patch of the object are refused with Kubernetes' message and change
    nothing; the status subresource ignores metadata (CRD status semantics), so a finalizer sent
    there is not added either; removing the finalizers still completes the deletion.
    """
    await api.post(NA, attachment("d1", "n", "s", finalizers=["example.com/hold"]))
    # before deletion, adding one is fine
    added = await api.patch(NA + "/d1", {"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}})
    assert added.status == 200 and added.body["metadata"]["finalizers"] == ["example.com/hold", "example.com/more"]
    d = await api.delete(NA + "/d1")
    assert d.status == 202 and d.body["metadata"]["deletionTimestamp"]
    before = (await api.get(NA + "/d1")).body
    message = (
        'NetworkAttachment.network.example.com "d1" is invalid: metadata.finalizers: Forbidden: no new finalizers'
        ' can be added if the object is being deleted, found new finalizers []string{"example.com/new"}'
    )
    put_body = {**before, "metadata": {**before["metadata"], "finalizers": ["example.com/hold", "example.com/new"]}}
    attempts = [
        await api.put(NA + "/d1", put_body),
        await api.patch(NA + "/d1", {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}}),
        await api.patch(
            NA + "/d1", [{"op": "add", "path": "/metadata/finalizers/-", "value": "example.com/new"}], kind="json"
        ),
        # a swap is an addition too
        await api.patch(NA + "/d1", {"metadata": {"finalizers": ["example.com/new"]}}),
    ]
    for r in attempts:
        assert r.status == 422 and r.body["reason"] == "Invalid", r.body
        assert r.body["message"] == message
        assert r.body["details"]["causes"] == [{
            "reason": "FieldValueForbidden",
            "message": "Forbidden: no new finalizers can be added if the object is being deleted, found new"
                       ' finalizers []string{"example.com/new"}',
            "field": "metadata.finalizers",
        }]  # fmt: skip
    assert (await api.get(NA + "/d1")).body == before  # nothing changed
    # the status subresource keeps metadata as it is: the finalizer is not added
    st = await api.patch(NA + "/d1/status", {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]},
                                              "status": {"hostIP": "192.0.2.1"}})  # fmt: skip
    assert st.status == 200 and st.body["metadata"]["finalizers"] == ["example.com/hold", "example.com/more"]
    # removing finalizers still works, one at a time and then the last
    r = await api.patch(NA + "/d1", {"metadata": {"finalizers": ["example.com/hold"]}})
    assert r.status == 200 and r.body["metadata"]["finalizers"] == ["example.com/hold"]
    r = await api.patch(NA + "/d1", [{"op": "remove", "path": "/metadata/finalizers/0"}], kind="json")
    assert r.status == 200
    assert (await api.get(NA + "/d1")).status == 404


async def test_delete_preconditions(api: RawAPI) -> None:
    o = (await api.post(NA, attachment("a1", "n", "s"))).body
    bad = await api.delete(NA + "/a1", {"preconditions": {"uid": "someone-else"}})
    assert bad.status == 409 and "Precondition failed: UID in precondition" in bad.body["message"]
    ok = await api.delete(NA + "/a1", {"preconditions": {"uid": o["metadata"]["uid"]}})
    assert ok.status == 200


async def test_gc_deletes_locks_of_deleted_attachment(api: RawAPI) -> None:
    na1 = (await api.post(NA, attachment("a1", "n", "s"))).body
    na2 = (await api.post(NA, attachment("a2", "n", "s"))).body
    assert (await api.post(IPL, iplock("v1-5-10-0-0-2", "s", na1))).status == 201
    assert (await api.post(IPL, iplock("v1-5-10-0-0-3", "s", na2))).status == 201
    both = iplock("v1-5-10-0-0-4", "s", na1)
    both["metadata"]["ownerReferences"].append({**both["metadata"]["ownerReferences"][0], "name": "a2",
                                                "uid": na2["metadata"]["uid"], "controller": False})  # fmt: skip
    assert (await api.post(IPL, both)).status == 201
    await api.delete(NA + "/a1")

    async def locks() -> list[str]:
        return sorted(i["metadata"]["name"] for i in (await api.get(IPL)).body["items"])

    async def gone() -> bool:
        return await locks() == ["v1-5-10-0-0-3", "v1-5-10-0-0-4"]

    await eventually(gone)
    shared = (await api.get(IPL + "/v1-5-10-0-0-4")).body
    await eventually(lambda: _refs(api, "v1-5-10-0-0-4", 1))
    assert shared["metadata"]["name"] == "v1-5-10-0-0-4"


async def test_gc_leaves_a_dependent_that_changed_after_it_was_judged(server: APIServer, api: RawAPI) -> None:
    """The collector deletes from its own (cache) view, so the version it judged is the deletion's
    precondition: a lock that gained a live owner in the store before the cache caught up is kept."""
    from kos.api import codec
    from kos.api.meta import OwnerReference

    gc, cacher = server.gc, server.cacher
    assert gc is not None and cacher is not None
    await gc.stop()  # the test drives the collector by hand
    na1 = (await api.post(NA, attachment("a1", "n", "s"))).body
    na2 = (await api.post(NA, attachment("a2", "n", "s"))).body
    assert (await api.post(IPL, iplock("v1-5-10-0-0-2", "s", na1))).status == 201
    await api.delete(NA + "/a1")
    await cacher.sync()
    registry = server.registries["iplocks"]
    judged = registry.cache.get(f"{NS}/v1-5-10-0-0-2")
    assert judged is not None
    live = OwnerReference(api_version="network.example.com/v1alpha1", kind="NetworkAttachment", name="a2",
                          uid=na2["metadata"]["uid"])  # fmt: skip
    changed = codec.replace_meta(judged.obj, resource_version="",
                                 owner_references=(*judged.obj.metadata.owner_references, live))  # fmt: skip
    await cacher.store.update(registry.key(NS, "v1-5-10-0-0-2"), codec.encode(changed), judged.rev)
    assert registry.cache.get(f"{NS}/v1-5-10-0-0-2") is judged  # the cache has not seen the change yet
    with pytest.raises(Conflict):
        await gc._process(("iplocks", f"{NS}/v1-5-10-0-0-2"))
    kept = (await api.get(IPL + "/v1-5-10-0-0-2")).body
    assert [r["name"] for r in kept["metadata"]["ownerReferences"]] == ["a1", "a2"]


async def _refs(api: RawAPI, name: str, n: int) -> bool:
    o = (await api.get(IPL + "/" + name)).body
    return len(o["metadata"].get("ownerReferences", [])) == n


async def test_gc_removes_orphaned_dependents_created_after_owner_deletion(api: RawAPI) -> None:
    na1 = (await api.post(NA, attachment("a1", "n", "s"))).body
    await api.delete(NA + "/a1")
    assert (await api.post(IPL, iplock("v1-5-10-0-0-2", "s", na1))).status == 201

    async def gone() -> bool:
        return (await api.get(IPL + "/v1-5-10-0-0-2")).status == 404

    await eventually(gone)


async def test_orphan_and_foreground_propagation(api: RawAPI) -> None:
    na1 = (await api.post(NA, attachment("a1", "n", "s"))).body
    await api.post(IPL, iplock("v1-5-10-0-0-2", "s", na1))
    d = await api.delete(NA + "/a1", params={"propagationPolicy": "Orphan"})
    assert d.status == 202

    async def na_gone() -> bool:
        return (await api.get(NA + "/a1")).status == 404

    await eventually(na_gone)
    lock = (await api.get(IPL + "/v1-5-10-0-0-2")).body
    assert "ownerReferences" not in lock["metadata"]

    na2 = (await api.post(NA, attachment("a2", "n", "s"))).body
    await api.post(IPL, iplock("v1-5-10-0-0-3", "s", na2))
    d = await api.delete(NA + "/a2", {"propagationPolicy": "Foreground"})
    assert d.status == 202 and "foregroundDeletion" in d.body["metadata"]["finalizers"]

    async def both_gone() -> bool:
        return (await api.get(NA + "/a2")).status == 404 and (await api.get(IPL + "/v1-5-10-0-0-3")).status == 404

    await eventually(both_gone)


async def test_subnet_conflict_admission(api: RawAPI) -> None:
    assert (await api.post(SN, subnet("s1", 10, "10.1.0.0/24"))).status == 201
    overlap = await api.post(SN, subnet("s2", 10, "10.1.0.128/25"))
    assert overlap.status == 422
    assert overlap.body["details"]["causes"][0]["field"] == "spec.ipv4"
    assert f"{NS}/s1's (10.1.0.0/24)" in overlap.body["message"]
    other_ns = await api.post(RawAPI.path("subnets", "tenant-b"), subnet("s3", 10, "10.2.0.0/24"))
    assert other_ns.status == 422 and other_ns.body["details"]["causes"][0]["field"] == "spec.vni"
    assert (await api.post(SN, subnet("s4", 10, "10.1.1.0/24"))).status == 201
    assert (await api.post(RawAPI.path("subnets", "tenant-b"), subnet("s5", 11, "10.1.0.0/24"))).status == 201
    # concurrent conflicting creates: exactly one wins
    rs = await asyncio.gather(*(api.post(SN, subnet(f"c{i}", 20, "10.9.0.0/24")) for i in range(10)))
    assert sorted(r.status for r in rs) == [201] + [422] * 9


async def test_subnet_conflict_check_can_be_disabled() -> None:
    async with running_apiserver(check_subnet_conflicts=False) as s, RawAPI(s.url) as api:
        assert (await api.post(SN, subnet("s1", 10, "10.1.0.0/24"))).status == 201
        assert (await api.post(SN, subnet("s2", 10, "10.1.0.0/24"))).status == 201


async def test_deletecollection_and_dry_run(api: RawAPI) -> None:
    for i in range(4):
        await api.post(NA, attachment(f"a{i}", "n", "s", labels={"grp": "x" if i < 3 else "y"}))
    dry = await api.post(NA, attachment("dry", "n", "s"), params={"dryRun": "All"})
    assert dry.status == 201 and (await api.get(NA + "/dry")).status == 404
    r = await api.delete(NA, params={"labelSelector": "grp=x"})
    assert r.status == 200 and len(r.body["items"]) == 3
    assert [i["metadata"]["name"] for i in (await api.get(NA)).body["items"]] == ["a3"]


async def test_no_op_update_keeps_resource_version(api: RawAPI) -> None:
    o = (await api.post(NA, attachment("a1", "n", "s"))).body
    r = await api.put(NA + "/a1", o)
    assert r.status == 200 and r.body["metadata"]["resourceVersion"] == o["metadata"]["resourceVersion"]


async def test_discovery_health_and_metrics(api: RawAPI) -> None:
    apis = (await api.get("/apis")).body
    assert apis["groups"][0]["name"] == "network.example.com"
    res = (await api.get("/apis/network.example.com/v1alpha1")).body
    by_name = {r["name"]: r for r in res["resources"]}
    assert by_name["subnets"]["shortNames"] == ["sn"] and "watch" in by_name["subnets"]["verbs"]
    assert by_name["networkattachments"]["shortNames"] == ["na"] and "networkattachments/status" in by_name
    assert by_name["iplocks"]["shortNames"] == ["ipl"] and "iplocks/status" not in by_name
    assert (await api.get("/version")).body["major"] == "1"
    assert (await api.get("/openapi/v2")).body["swagger"] == "2.0"
    for p in ("/healthz", "/livez", "/readyz"):
        assert (await api.get(p)).status == 200
    await api.post(SN, subnet("s1", 10, "10.1.0.0/24"))
    m = (await api.get("/metrics")).body
    assert 'apiserver_request_total{code="201",resource="subnets",subresource="",verb="create"} 1.0' in m
    assert "apiserver_request_duration_seconds_bucket" in m and "apiserver_registered_watchers" in m
    assert 'kos_storage_request_duration_seconds_count{operation="create",type="subnets"} 1.0' in m


async def test_table_output(api: RawAPI) -> None:
    await api.post(NA, attachment("a1", "node-1", "s1"))
    await api.give_address(NA + "/a1", "10.0.0.2", 3, macAddress="m", ifcName="i", hostIP="192.0.2.1")
    h = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    t = (await api.get(RawAPI.path("networkattachments"), headers=h)).body
    assert t["kind"] == "Table"
    cols = [c["name"] for c in t["columnDefinitions"] if c["priority"] == 0]
    assert cols == ["Name", "Subnet", "Node", "IPv4", "MAC", "HostIP", "Ready", "Age"]
    assert t["rows"][0]["cells"][:7] == ["a1", "s1", "node-1", "10.0.0.2", "m", "192.0.2.1", "True"]
    assert t["rows"][0]["object"]["metadata"]["namespace"] == NS


async def test_foreground_deletion_follows_block_owner_deletion(server: APIServer, api: RawAPI) -> None:
    """Kubernetes' rules: a foreground deletion deletes every dependent but waits only for those whose reference
    has blockOwnerDeletion; a dependent that also has a live owner is kept and loses only the deleted owner's
    reference."""
    owner = (await api.post(NA, attachment("fg", "n", "s"))).body
    other = (await api.post(NA, attachment("live", "n", "s"))).body
    blocking = iplock("v1-5-10-0-0-7", "s", owner)
    blocking["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True
    blocking["metadata"]["finalizers"] = ["example.com/slow"]
    assert (await api.post(IPL, blocking)).status == 201
    assert (await api.post(IPL, iplock("v1-5-10-0-0-8", "s", owner))).status == 201  # does not block
    shared = iplock("v1-5-10-0-0-9", "s", owner)
    shared["metadata"]["ownerReferences"].append({**shared["metadata"]["ownerReferences"][0], "name": "live",
                                                  "uid": other["metadata"]["uid"], "controller": False})  # fmt: skip
    assert (await api.post(IPL, shared)).status == 201
    d = await api.delete(NA + "/fg", {"propagationPolicy": "Foreground"})
    assert d.status == 202

    async def settled() -> bool:
        slow = (await api.get(IPL + "/v1-5-10-0-0-7")).body
        return (
            slow["metadata"].get("deletionTimestamp") is not None
            and (await api.get(IPL + "/v1-5-10-0-0-8")).status == 404
            and await _refs(api, "v1-5-10-0-0-9", 1)
        )

    await eventually(settled)
    await collected(server)  # the collector has done all it will: the owner still waits for the slow dependent
    held = await api.get(NA + "/fg")
    assert held.status == 200 and "foregroundDeletion" in held.body["metadata"]["finalizers"]  # waits for the slow one
    kept = (await api.get(IPL + "/v1-5-10-0-0-9")).body
    assert [r["name"] for r in kept["metadata"]["ownerReferences"]] == ["live"]
    assert (await api.patch(IPL + "/v1-5-10-0-0-7", {"metadata": {"finalizers": None}})).status == 200

    async def owner_gone() -> bool:
        return (await api.get(NA + "/fg")).status == 404

    await eventually(owner_gone)
