"""The official `kubernetes` Python client against a `kos apiserver` process.

The client is synchronous, so it talks to a server in its own process (the
module-scoped `apiserver` fixture) and watches run in a thread while the test
thread makes changes. Covered: discovery through the DynamicClient; create, get,
list, patch (merge and JSON patch), replace and delete of Subnets and NAs; the
`status` subresource; label and field selectors (including `status.ipv4!=`);
pagination; and watches through `kubernetes.watch.Watch` over
`CustomObjectsApi` and the DynamicClient: events in order, resuming from a
resourceVersion, field-selector transitions, and 410 from a compacted history.
Each test uses its own namespace, VNIs and node names.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import (
    BadRequestError,
    ConflictError,
    DynamicApiError,
    NotFoundError,
    UnprocessibleEntityError,
)

GROUP, VERSION = "network.example.com", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@pytest.fixture(scope="module")
def api(apiserver: Any) -> Iterator[client.ApiClient]:
    c = client.ApiClient(client.Configuration(host=apiserver.url))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def dyn(api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> dynamic.DynamicClient:
    cache = tmp_path_factory.mktemp("dynamic") / "discovery.json"
    return dynamic.DynamicClient(api, cache_file=str(cache))


@pytest.fixture(scope="module")
def subnets(dyn: dynamic.DynamicClient) -> Any:
    return dyn.resources.get(api_version=API_VERSION, kind="Subnet")


@pytest.fixture(scope="module")
def nas(dyn: dynamic.DynamicClient) -> Any:
    return dyn.resources.get(api_version=API_VERSION, kind="NetworkAttachment")


@pytest.fixture(scope="module")
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def subnet(name: str, vni: int, cidr: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": API_VERSION, "kind": "Subnet", "metadata": meta, "spec": {"vni": vni, "ipv4": cidr}}


def na(name: str, subnet: str, node: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": API_VERSION, "kind": "NetworkAttachment", "metadata": meta,
            "spec": {"node": node, "subnet": subnet}}  # fmt: skip


def names(result: Any) -> list[str]:
    return sorted(i.metadata.name for i in result.items)


def rv(obj: Any) -> int:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    return int(meta["resourceVersion"] if isinstance(meta, dict) else meta.resourceVersion)


class Collector:
    """Consume a watch stream in a thread until `stop_when(events)` holds (or the server ends the stream)."""

    def __init__(self, start: Any, stop_when: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self.watcher = watch.Watch()
        self._start, self._stop_when = start, stop_when
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for ev in self._start(self.watcher):
                with self._cond:
                    self.events.append(ev)
                    self._cond.notify_all()
                if self._stop_when(self.events):
                    self.watcher.stop()
                    break
        except BaseException as e:
            self.error = e
        finally:
            with self._cond:
                self._cond.notify_all()

    def wait_events(self, n: int, timeout: float = 30.0) -> None:
        """Block until `n` events arrived (the watch is then established: later changes are live events)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.events) >= n or not self._thread.is_alive(), timeout)
        assert ok and len(self.events) >= n, f"expected {n} events; got {self.summary()} ({self.error!r})"

    def join(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the watch did not finish; events so far: {self.summary()}"
        if self.error is not None:
            raise self.error
        return self.events

    def summary(self) -> list[tuple[str, str, int]]:
        return [(e["type"], e["raw_object"]["metadata"].get("name", ""), rv(e["raw_object"])) for e in self.events]


# --- discovery ------------------------------------------------------------------------------------


def test_discovery(dyn: dynamic.DynamicClient, api: client.ApiClient, subnets: Any, nas: Any) -> None:
    assert subnets.name == "subnets" and subnets.namespaced and subnets.short_names == ["sn"]
    assert nas.name == "networkattachments" and nas.short_names == ["na"]
    ipl = dyn.resources.get(api_version=API_VERSION, short_names=["ipl"])
    assert ipl.kind == "IPLock" and ipl.namespaced
    for r in (subnets, nas, ipl):
        assert set(r.verbs) == {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
        assert set(r.categories) == {"all", "kos"}
    assert set(subnets.subresources) == {"status"} and set(nas.subresources) == {"status"}
    assert ipl.subresources == {}
    assert dyn.version["kubernetes"]["major"] == "1"


def test_generated_discovery_apis(api: client.ApiClient) -> None:
    groups = client.ApisApi(api).get_api_versions()
    (group,) = [g for g in groups.groups if g.name == GROUP]
    assert group.preferred_version.group_version == API_VERSION
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    version = client.VersionApi(api).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")


# --- CRUD -----------------------------------------------------------------------------------------


def test_subnet_create_get_list_patch_replace_delete(subnets: Any) -> None:
    ns = "py-crud"
    body = subnet("alpha", 201, "10.201.0.0/24", app="a")
    body["status"] = {"validated": True}  # clients cannot set status on create
    created = subnets.create(body=body, namespace=ns)
    assert created.metadata.namespace == ns and created.metadata.uid and created.metadata.generation == 1
    assert created.spec.vni == 201 and created.spec.ipv4 == "10.201.0.0/24"
    assert not created.status.validated
    assert [w.section for w in created.extendedMetadata.writes] == ["spec"]

    got = subnets.get(name="alpha", namespace=ns)
    assert got.to_dict() == created.to_dict()
    listed = subnets.get(namespace=ns)
    assert listed.kind == "SubnetList" and names(listed) == ["alpha"]
    assert int(listed.metadata.resourceVersion) >= rv(created)

    patched = subnets.patch(name="alpha", namespace=ns, body={"metadata": {"labels": {"b": "2"}}}, content_type=MERGE)
    assert patched.metadata.labels.to_dict() == {"app": "a", "b": "2"}
    assert rv(patched) > rv(created) and patched.metadata.generation == 1
    jp = [{"op": "add", "path": "/metadata/annotations", "value": {"note": "x"}},
          {"op": "replace", "path": "/metadata/labels/app", "value": "c"}]  # fmt: skip
    patched2 = subnets.patch(name="alpha", namespace=ns, body=jp, content_type=JSON_PATCH)
    assert patched2.metadata.labels.to_dict() == {"app": "c", "b": "2"}
    assert patched2.metadata.annotations.to_dict() == {"note": "x"}

    # replace: needs the current resourceVersion; a stale one is a Conflict; spec is immutable
    fresh = patched2.to_dict()
    fresh["metadata"]["labels"] = {"only": "this"}
    replaced = subnets.replace(body=fresh, namespace=ns)
    assert replaced.metadata.labels.to_dict() == {"only": "this"}
    with pytest.raises(ConflictError) as conflict:
        subnets.replace(body=patched2.to_dict(), namespace=ns)
    assert conflict.value.status == 409 and "the object has been modified" in conflict.value.summary()
    no_rv = replaced.to_dict()
    del no_rv["metadata"]["resourceVersion"]
    with pytest.raises(UnprocessibleEntityError) as missing:
        subnets.replace(body=no_rv, namespace=ns)
    assert "metadata.resourceVersion" in missing.value.summary()
    immutable = replaced.to_dict()
    immutable["spec"]["vni"] = 202
    with pytest.raises(UnprocessibleEntityError) as imm:
        subnets.replace(body=immutable, namespace=ns)
    assert "spec.vni: Forbidden: attempt to update immutable field" in imm.value.summary()

    # the dynamic client's default patch type is strategic merge, which the server refuses with a hint
    with pytest.raises(DynamicApiError) as smp:
        subnets.patch(name="alpha", namespace=ns, body={"metadata": {"labels": {"x": "y"}}})
    assert smp.value.status == 415 and "merge" in smp.value.summary()

    assert subnets.get(name="alpha", namespace=ns).metadata.labels.to_dict() == {"only": "this"}
    deleted = subnets.delete(name="alpha", namespace=ns)
    assert deleted.metadata.name == "alpha"
    with pytest.raises(NotFoundError):
        subnets.get(name="alpha", namespace=ns)
    with pytest.raises(NotFoundError):
        subnets.delete(name="alpha", namespace=ns)
    assert names(subnets.get(namespace=ns)) == []


def test_creating_an_existing_subnet_is_already_exists(subnets: Any) -> None:
    ns = "py-dup"
    subnets.create(body=subnet("twice", 203, "10.203.0.0/24"), namespace=ns)
    with pytest.raises(ConflictError) as e:
        subnets.create(body=subnet("twice", 203, "10.203.0.0/24"), namespace=ns)
    assert "AlreadyExists" in e.value.summary() or '"twice" already exists' in e.value.summary()


def test_network_attachment_and_status_subresource(nas: Any, subnets: Any, custom: client.CustomObjectsApi) -> None:
    ns = "py-status"
    subnets.create(body=subnet("net", 204, "10.204.0.0/24"), namespace=ns)
    created = nas.create(body=na("a1", "net", "py-node-1"), namespace=ns)
    with pytest.raises(ConflictError) as dup:
        nas.create(body=na("a1", "net", "py-node-1"), namespace=ns)
    assert '"a1" already exists' in dup.value.summary()
    with pytest.raises(UnprocessibleEntityError) as bad:
        nas.create(body=na("a2", "net", ""), namespace=ns)
    assert "spec.node: Required value" in bad.value.summary()

    # status through the main resource is ignored
    body = created.to_dict()
    body["status"] = {"ipv4": "10.204.0.9"}
    body["metadata"]["labels"] = {"seen": "1"}
    main = nas.replace(body=body, namespace=ns)
    assert main.metadata.labels.seen == "1" and not main.status.ipv4

    # the status subresource changes status only, and stamps the sections it touched; an address needs the IPLock
    # that holds it, controlled by this attachment
    st = main.to_dict()
    st["status"] = {"ipv4": "10.204.0.2", "addressVNI": 204, "lockUID": "u-1", "macAddress": "0a:cc:00:02:00:cc",
                    "ifcName": "kos0acc000200cc", "hostIP": "192.168.1.1"}  # fmt: skip
    with pytest.raises(ConflictError) as unlocked:
        nas.status.replace(body=st, namespace=ns)
    assert "IPLock py-status/v1-204-10-204-0-2 does not exist" in unlocked.value.summary()
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NetworkAttachment", "name": "a1",
             "uid": main.metadata.uid, "controller": True}  # fmt: skip
    lock = custom.create_namespaced_custom_object(GROUP, VERSION, ns, "iplocks", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "IPLock", "spec": {"subnetName": "net"},
        "metadata": {"name": "v1-204-10-204-0-2", "ownerReferences": [owner]},
    })  # fmt: skip
    st["status"]["lockUID"] = lock["metadata"]["uid"]
    st["spec"]["node"] = "elsewhere"  # ignored by the status subresource
    st["metadata"]["labels"] = {"ignored": "yes"}
    written = nas.status.replace(body=st, namespace=ns)
    assert written.status.ipv4 == "10.204.0.2" and written.status.hostIP == "192.168.1.1"
    assert written.spec.node == "py-node-1" and written.metadata.labels.to_dict() == {"seen": "1"}
    assert written.metadata.generation == 1
    # the latest write first (the original's SetWrite order)
    assert [w.section for w in written.extendedMetadata.writes] == ["status.impl", "status.address", "spec"]

    # status patch through CustomObjectsApi (merge patch by default), and a status GET
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "networkattachments", "a1",
                                                 {"status": {"errors": {"host": ["link down"]}}})  # fmt: skip
    got = custom.get_namespaced_custom_object_status(GROUP, VERSION, ns, "networkattachments", "a1")
    assert got["status"]["errors"] == {"host": ["link down"]} and got["status"]["ipv4"] == "10.204.0.2"

    # the one mutable spec field bumps generation; the immutable ones are refused naming the field
    bumped = nas.patch(name="a1", namespace=ns, body={"spec": {"postDeleteExec": ["/bin/true"]}}, content_type=MERGE)
    assert bumped.metadata.generation == 2 and bumped.spec.postDeleteExec == ["/bin/true"]
    with pytest.raises(UnprocessibleEntityError) as imm:
        nas.patch(name="a1", namespace=ns, body={"spec": {"node": "other"}}, content_type=MERGE)
    assert "spec.node: Forbidden: attempt to update immutable field" in imm.value.summary()

    # a subresource replace without a resourceVersion is allowed (unconditional), as for CRDs
    plain = nas.get(name="a1", namespace=ns).to_dict()
    del plain["metadata"]["resourceVersion"]
    plain["status"]["errors"] = {}
    cleared = nas.status.replace(body=plain, namespace=ns)
    assert not cleared.status.errors or not cleared.status.errors.to_dict()

    assert nas.delete(name="a1", namespace=ns).metadata.name == "a1"
    with pytest.raises(NotFoundError):
        nas.get(name="a1", namespace=ns)
    assert names(nas.get(namespace=ns)) == []


# --- selectors and pagination ---------------------------------------------------------------------


def locked(custom: client.CustomObjectsApi, obj: dict[str, Any], ip: str, vni: int) -> dict[str, str | int]:
    """Take `ip` for the attachment `obj` as IPAM would (its IPLock), and the status fields that show it."""
    meta = obj["metadata"]
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NetworkAttachment", "name": meta["name"],
             "uid": meta["uid"], "controller": True}  # fmt: skip
    lock = custom.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], "iplocks", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "IPLock", "spec": {"subnetName": obj["spec"]["subnet"]},
        "metadata": {"name": f"v1-{vni}-{ip.replace('.', '-')}", "ownerReferences": [owner]},
    })  # fmt: skip
    return {"ipv4": ip, "addressVNI": vni, "lockUID": lock["metadata"]["uid"]}


def test_label_and_field_selectors(nas: Any, custom: client.CustomObjectsApi) -> None:
    ns = "py-sel"
    specs = [("s1", "sel-n1", "web"), ("s2", "sel-n1", "db"), ("s3", "sel-n2", "web"), ("s4", "sel-n3", "")]
    for name, node, app in specs:
        nas.create(body=na(name, "net", node, **({"app": app} if app else {})), namespace=ns)
    for name, ip in (("s1", "10.205.0.2"), ("s3", "10.205.0.3")):
        obj = nas.get(name=name, namespace=ns).to_dict()
        obj["status"] = locked(custom, obj, ip, 205)
        nas.status.replace(body=obj, namespace=ns)

    def sel(**kw: Any) -> list[str]:
        return names(nas.get(namespace=ns, **kw))

    assert sel(field_selector="spec.node=sel-n1") == ["s1", "s2"]
    assert sel(field_selector="spec.node==sel-n1") == ["s1", "s2"]
    assert sel(field_selector="spec.node!=sel-n1") == ["s3", "s4"]
    assert sel(field_selector="status.ipv4!=") == ["s1", "s3"]
    assert sel(field_selector="status.ipv4=") == ["s2", "s4"]
    assert sel(field_selector="spec.node=sel-n1,status.ipv4!=") == ["s1"]
    assert sel(field_selector="status.addressVNI=205") == ["s1", "s3"]
    assert sel(field_selector="status.addressVNI=0") == ["s2", "s4"]
    assert sel(field_selector="metadata.name=s4") == ["s4"]
    assert sel(label_selector="app=web") == ["s1", "s3"]
    assert sel(label_selector="app in (web,db)") == ["s1", "s2", "s3"]
    assert sel(label_selector="!app") == ["s4"]
    assert sel(label_selector="app,app notin (web)") == ["s2"]
    assert sel(label_selector="app!=web") == ["s2", "s4"]
    assert sel(label_selector="app=web", field_selector="spec.node=sel-n2") == ["s3"]

    # across namespaces, and through CustomObjectsApi
    assert names(nas.get(field_selector="spec.node=sel-n1")) == ["s1", "s2"]
    everywhere = custom.list_cluster_custom_object(GROUP, VERSION, "networkattachments",
                                                   field_selector="spec.node=sel-n3")  # fmt: skip
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]] == [(ns, "s4")]

    with pytest.raises(BadRequestError) as bad_field:
        nas.get(namespace=ns, field_selector="spec.colour=red")
    assert 'does not have field with label "spec.colour"' in bad_field.value.summary()
    with pytest.raises(BadRequestError):
        nas.get(namespace=ns, label_selector="app in (web")


def test_pagination_and_delete_collection(dyn: dynamic.DynamicClient, custom: client.CustomObjectsApi) -> None:
    ns = "py-page"
    ipl = dyn.resources.get(api_version=API_VERSION, kind="IPLock")
    for i in range(7):
        ipl.create(body={"apiVersion": API_VERSION, "kind": "IPLock",
                         "metadata": {"name": f"v1-206-10-206-0-{i + 2}", "labels": {"half": str(i % 2)}},
                         "spec": {"subnetName": "net"}}, namespace=ns)  # fmt: skip
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = ipl.get(namespace=ns, limit=3, _continue=token)
        pages += 1
        seen += [i.metadata.name for i in page.items]
        token = page.metadata["continue"]
        if not token:
            break
        assert page.metadata.remainingItemCount == 7 - len(seen)
    assert pages == 3 and seen == sorted(f"v1-206-10-206-0-{i + 2}" for i in range(7))

    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, "iplocks", label_selector="half=0")
    assert [i.metadata.labels.half for i in ipl.get(namespace=ns).items] == ["1", "1", "1"]


# --- watch ----------------------------------------------------------------------------------------


def test_watch_sees_added_modified_deleted_in_order(custom: client.CustomObjectsApi, subnets: Any) -> None:
    ns = "py-watch"
    start = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "subnets")["metadata"]["resourceVersion"]
    c = Collector(
        lambda w: w.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            "subnets",
            resource_version=start,
            timeout_seconds=30,
        ),
        lambda evs: evs[-1]["type"] == "DELETED",
    )
    rvs = [rv(subnets.create(body=subnet("w", 207, "10.207.0.0/24"), namespace=ns))]
    rvs.append(rv(subnets.patch(name="w", namespace=ns, body={"metadata": {"labels": {"x": "1"}}},
                                content_type=MERGE)))  # fmt: skip
    obj = subnets.get(name="w", namespace=ns).to_dict()
    obj["status"] = {"validated": True}
    rvs.append(rv(subnets.status.replace(body=obj, namespace=ns)))
    subnets.delete(name="w", namespace=ns)
    events = c.join()
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    assert [rv(e["object"]) for e in events[:3]] == rvs
    assert rv(events[3]["object"]) > rvs[-1], "a DELETED event carries the revision of the delete"
    assert events[1]["object"]["metadata"]["labels"] == {"x": "1"}
    assert events[2]["object"]["status"] == {"validated": True}


def test_watch_resumes_from_a_resource_version(custom: client.CustomObjectsApi, subnets: Any) -> None:
    ns = "py-resume"
    subnets.create(body=subnet("a", 208, "10.208.0.0/24"), namespace=ns)
    rv0 = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "subnets")["metadata"]["resourceVersion"]
    rv_b = rv(subnets.create(body=subnet("b", 208, "10.208.1.0/24"), namespace=ns))
    subnets.patch(name="a", namespace=ns, body={"metadata": {"labels": {"step": "2"}}}, content_type=MERGE)

    def watch_from(version: str | int, count: int) -> list[dict[str, Any]]:
        c = Collector(
            lambda w: w.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                "subnets",
                resource_version=str(version),
                timeout_seconds=30,
            ),
            lambda evs: len(evs) >= count,
        )
        return c.join()

    first = watch_from(rv0, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == [("ADDED", "b"), ("MODIFIED", "a")]
    last = rv(first[-1]["object"])

    subnets.delete(name="b", namespace=ns)
    subnets.create(body=subnet("c", 208, "10.208.2.0/24"), namespace=ns)
    resumed = watch_from(last, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in resumed] == [("DELETED", "b"), ("ADDED", "c")]
    assert rv(resumed[0]["object"]) > last

    # from the middle of the history: everything after that revision, nothing before
    middle = watch_from(rv_b, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in middle] == [
        ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c"),
    ]  # fmt: skip

    # without a resourceVersion: the current objects as ADDED, then live changes
    c = Collector(lambda w: w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, "subnets",
                                     timeout_seconds=30),
                  lambda evs: len(evs) >= 3)  # fmt: skip
    c.wait_events(2)
    subnets.patch(name="c", namespace=ns, body={"metadata": {"labels": {"live": "yes"}}}, content_type=MERGE)
    events = c.join()
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in events[:2]) == [("ADDED", "a"), ("ADDED", "c")]
    assert (events[2]["type"], events[2]["object"]["metadata"]["labels"]) == ("MODIFIED", {"live": "yes"})


def test_dynamic_watch_with_a_field_selector_sees_transitions(nas: Any, custom: client.CustomObjectsApi) -> None:
    """`status.ipv4!=`: entering the selection is ADDED, leaving it is DELETED (what the agents rely on)."""
    ns = "py-trans"
    start = nas.get(namespace=ns).metadata.resourceVersion
    c = Collector(
        lambda w: nas.watch(
            namespace=ns, field_selector="status.ipv4!=", resource_version=start, timeout=30, watcher=w
        ),
        lambda evs: evs[-1]["type"] == "DELETED",
    )
    nas.create(body=na("t", "net", "trans-n1"), namespace=ns)  # not selected: no event
    obj = nas.get(name="t", namespace=ns).to_dict()
    obj["status"] = locked(custom, obj, "10.209.0.2", 209)
    nas.status.replace(body=obj, namespace=ns)  # enters: ADDED
    nas.patch(name="t", namespace=ns, body={"metadata": {"labels": {"l": "1"}}}, content_type=MERGE)  # MODIFIED
    obj = nas.get(name="t", namespace=ns).to_dict()
    obj["status"] = {}
    nas.status.replace(body=obj, namespace=ns)  # leaves: DELETED
    events = c.join()
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[0]["object"].status.ipv4 == "10.209.0.2"
    assert events[1]["object"].metadata.labels.l == "1"
    assert nas.get(name="t", namespace=ns).metadata.name == "t", "leaving a selection is not deleting the object"


def test_watch_from_a_compacted_revision_is_410(apiserver_factory: Any, tmp_path: Path) -> None:
    server = apiserver_factory("--watch-cache-size=100")
    with client.ApiClient(client.Configuration(host=server.url)) as api:
        custom = client.CustomObjectsApi(api)
        ns = "py-gone"
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "subnets", subnet("old", 210, "10.210.0.0/24"))
        for i in range(250):  # the cache keeps between 100 and 200 events per kind
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "subnets", "old",
                                                  {"metadata": {"labels": {"i": str(i)}}})  # fmt: skip
        w = watch.Watch()
        with pytest.raises(ApiException) as gone:
            for _ in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, "subnets",
                              resource_version="1", timeout_seconds=10):  # fmt: skip
                pytest.fail("a watch from a compacted revision must not deliver events")
        assert gone.value.status == 410
        with pytest.raises(ApiException) as exact:
            custom.list_namespaced_custom_object(GROUP, VERSION, ns, "subnets", resource_version="1",
                                                 resource_version_match="Exact")  # fmt: skip
        assert exact.value.status == 410
        # a fresh list-then-watch recovers
        start = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "subnets")["metadata"]["resourceVersion"]
        c = Collector(lambda w2: w2.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, "subnets",
                                           resource_version=start, timeout_seconds=30),
                      lambda evs: len(evs) >= 1)  # fmt: skip
        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "subnets", "old")
        assert [e["type"] for e in c.join()] == ["DELETED"]
