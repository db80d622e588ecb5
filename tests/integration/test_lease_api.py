"""The Lease kind (coordination.k8s.io/v1) over REST and through the real kubectl, against a `kos apiserver` process.

Lease lives in a group other than kos's own, so these check that discovery lists both groups, that the
routes serve `/apis/coordination.k8s.io/v1/...` (and refuse a kos kind there and a Lease under kos's group),
and that create, get, update with a stale resourceVersion (409), watch, delete and validation (422) behave as
kube-apiserver's do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

Http = Any  # the `http` fixture's class (tests/integration/conftest.py)

LEASES = "/apis/coordination.k8s.io/v1"


def lease(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def path(namespace: str, name: str = "") -> str:
    return f"{LEASES}/namespaces/{namespace}/leases" + (f"/{name}" if name else "")


def test_discovery_lists_the_coordination_group(http: Http) -> None:
    groups = {g["name"]: g["preferredVersion"]["groupVersion"] for g in http.get("/apis")["groups"]}
    assert groups == {
        "network.example.com": "network.example.com/v1alpha1",
        "coordination.k8s.io": "coordination.k8s.io/v1",
    }
    resources = http.get(LEASES)
    assert resources["groupVersion"] == "coordination.k8s.io/v1"
    assert [(r["name"], r["kind"], r["namespaced"]) for r in resources["resources"]] == [("leases", "Lease", True)]
    kos = [r["name"] for r in http.get("/apis/network.example.com/v1alpha1")["resources"]]
    assert "leases" not in kos
    assert http.get("/apis/coordination.k8s.io")["preferredVersion"]["version"] == "v1"
    v3 = http.get("/openapi/v3")["paths"]
    assert "apis/coordination.k8s.io/v1" in v3
    doc = http.get("/openapi/v3/apis/coordination.k8s.io/v1")
    spec = doc["components"]["schemas"]["io.k8s.api.coordination.v1.LeaseSpec"]["properties"]
    assert spec["leaseDurationSeconds"]["format"] == "int32"
    assert f"{LEASES}/namespaces/{{namespace}}/leases/{{name}}" in doc["paths"]


def test_a_kind_is_served_only_under_its_own_group(http: Http) -> None:
    assert http.request("GET", f"{LEASES}/namespaces/x/subnets").status == 404
    assert http.request("GET", "/apis/network.example.com/v1alpha1/namespaces/x/leases").status == 404


def test_create_get_update_conflict_delete(http: Http) -> None:
    ns = "lease-crud"
    created = http.post(path(ns), lease("a", ns, holderIdentity="me", leaseDurationSeconds=15,
                                        renewTime="2026-12-06T12:00:00.000000Z", leaseTransitions=0))  # fmt: skip
    assert created["apiVersion"] == "coordination.k8s.io/v1"
    assert created["spec"]["renewTime"] == "2026-12-06T12:00:00.000000Z"  # a MicroTime, kept as written
    rv = created["metadata"]["resourceVersion"]
    got = http.get(path(ns, "a"))
    assert got["spec"]["holderIdentity"] == "me" and got["metadata"]["resourceVersion"] == rv
    dup = http.request("POST", path(ns), lease("a", ns))
    assert dup.status == 409 and dup.json()["details"] == {
        "name": "a",
        "group": "coordination.k8s.io",
        "kind": "leases",
    }
    renewed = http.put(path(ns, "a"), {**got, "spec": {**got["spec"], "renewTime": "2026-12-06T12:00:02.000000Z"}})
    assert renewed["metadata"]["resourceVersion"] != rv
    stale = http.request("PUT", path(ns, "a"), {**got, "spec": {**got["spec"], "holderIdentity": "other"}})
    assert stale.status == 409
    assert stale.json()["message"].startswith('Operation cannot be fulfilled on leases.coordination.k8s.io "a"')
    assert http.get(path(ns, "a"))["spec"]["holderIdentity"] == "me"
    patched = http.ok("PATCH", path(ns, "a"), {"spec": {"holderIdentity": ""}},
                      content_type="application/merge-patch+json")  # fmt: skip
    assert patched["spec"]["holderIdentity"] == ""
    listed = http.get(f"{LEASES}/leases")
    assert listed["kind"] == "LeaseList" and listed["apiVersion"] == "coordination.k8s.io/v1"
    assert [i["metadata"]["name"] for i in listed["items"] if i["metadata"]["namespace"] == ns] == ["a"]
    http.ok("DELETE", path(ns, "a"))
    missing = http.request("GET", path(ns, "a"))
    assert missing.status == 404 and missing.json()["message"] == 'leases.coordination.k8s.io "a" not found'


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"leaseDurationSeconds": 0}, "spec.leaseDurationSeconds"),
        ({"leaseTransitions": -1}, "spec.leaseTransitions"),
        ({"renewTime": "yesterday"}, "spec.renewTime"),
        ({"preferredHolder": "x"}, "spec.preferredHolder"),
        ({"strategy": "Newest"}, "spec.strategy"),
    ],
)
def test_invalid_leases_are_422(http: Http, spec: dict[str, Any], field: str) -> None:
    r = http.request("POST", path("lease-bad"), lease("bad", "lease-bad", **spec))
    assert r.status == 422, r.body
    body = r.json()
    assert body["message"].startswith('Lease.coordination.k8s.io "bad" is invalid')
    assert [c["field"] for c in body["details"]["causes"]] == [field]


def test_wrong_api_version_is_400(http: Http) -> None:
    r = http.request("POST", path("lease-av"), {**lease("a", "lease-av"), "apiVersion": "network.example.com/v1alpha1"})
    assert r.status == 400 and "coordination.k8s.io/v1" in r.json()["message"]


def test_watch_over_http(http: Http) -> None:
    ns = "lease-watch"
    rv = http.get(path(ns))["metadata"]["resourceVersion"]
    http.post(path(ns), lease("w", ns, holderIdentity="h"))
    r = http.request("GET", path(ns) + f"?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    events = [json.loads(line) for line in r.body.splitlines() if line.strip()]
    assert [(e["type"], e["object"]["kind"], e["object"]["apiVersion"]) for e in events] == [
        ("ADDED", "Lease", "coordination.k8s.io/v1")
    ]


# --- kubectl --------------------------------------------------------------------------------------


class Kubectl:
    """The real kubectl against the module's server, with a private cache and no kubeconfig."""

    def __init__(self, binary: str, server: str, workdir: Path) -> None:
        self.binary, self.server, self.workdir = binary, server, workdir
        self.env = {**os.environ, "KUBECONFIG": str(workdir / "none")}

    def argv(self, *args: str) -> list[str]:
        return [self.binary, f"--server={self.server}", f"--cache-dir={self.workdir / 'cache'}", *args]

    def out(self, *args: str) -> str:
        r = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env, timeout=60, check=False)
        assert r.returncode == 0, f"kubectl {' '.join(args)} exited {r.returncode}: {r.stderr}"
        return r.stdout


@pytest.fixture(scope="module")
def kubectl(apiserver: Any, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not on PATH (tests/integration/test_kubectl.py installs it as root)")
    return Kubectl(binary, apiserver.url, tmp_path_factory.mktemp("kubectl"))


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


@pytest.mark.kubectl
def test_kubectl_gets_leases(kubectl: Kubectl, http: Http) -> None:
    ns = "lease-kubectl"
    http.post(path(ns), lease("kcm", ns, holderIdentity="host_1234", leaseDurationSeconds=15))
    rows = table(kubectl.out("get", "leases", "-A"))
    assert rows[0] == ["NAMESPACE", "NAME", "HOLDER", "AGE"]
    assert [r[:3] for r in rows[1:] if r[0] == ns] == [[ns, "kcm", "host_1234"]]
    doc = yaml.safe_load(kubectl.out("get", "lease", "-n", ns, "kcm", "-o", "yaml"))
    assert doc["apiVersion"] == "coordination.k8s.io/v1" and doc["spec"]["leaseDurationSeconds"] == 15
    assert "coordination.k8s.io/v1" in kubectl.out("api-versions").split()


@pytest.mark.kubectl
def test_kubectl_watches_leases(kubectl: Kubectl, http: Http) -> None:
    ns = "lease-kwatch"
    http.post(path(ns), lease("first", ns, holderIdentity="a"))
    proc = subprocess.Popen(kubectl.argv("get", "leases", "-n", ns, "-w", "--request-timeout=30s"),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=kubectl.env)  # fmt: skip
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "second" in line:
                seen.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        http.post(path(ns), lease("second", ns, holderIdentity="b"))
        assert seen.wait(30), f"kubectl -w printed {lines!r}"
    finally:
        proc.kill()
        proc.wait()
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
    rows = table("".join(lines))
    assert rows[0][:2] == ["NAME", "HOLDER"]
    assert rows[1][:2] == ["first", "a"]
    assert rows[-1][:2] == ["second", "b"]
