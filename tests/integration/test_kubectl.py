"""The real `kubectl` against a `kos apiserver` process: discovery, apply, tables, output, patch, label, watch.

Every kubectl call gets `--server=http://127.0.0.1:PORT`, a private `--cache-dir`
and `KUBECONFIG=<tmp>/none`, so nothing in ~/.kube is read or written. Each test
uses its own namespace and its own VNIs, so the tests share one server (module
scope) without seeing each other. NetworkAttachments and IPLocks are set up
through the HTTP API where kubectl has no verb for it (status writes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.kubectl

API_VERSION = "network.example.com/v1alpha1"


def _find_kubectl() -> tuple[str | None, str]:
    path = shutil.which("kubectl")
    if path:
        return path, ""
    if os.geteuid() != 0:
        return None, "kubectl is not on PATH and we are not root (make test installs kubernetes-client as root)"
    if shutil.which("apt-get") is None:
        return None, "kubectl is not on PATH and apt-get is not available to install kubernetes-client"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "kubernetes-client"],
                       env=env, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    path = shutil.which("kubectl")
    if path:
        return path, ""
    return None, f"kubectl is not on PATH and `apt-get install kubernetes-client` failed: {r.stderr.strip()[-500:]}"


@dataclasses.dataclass
class Kubectl:
    binary: str
    server: str
    workdir: Path

    def argv(self, *args: str) -> list[str]:
        return [self.binary, f"--server={self.server}", f"--cache-dir={self.workdir / 'cache'}", *args]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.workdir / "none")}

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(*args), input=stdin, capture_output=True, text=True, env=self.env,
                           timeout=60, check=False)  # fmt: skip
        if check and r.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def out(self, *args: str, stdin: str | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout

    def apply(self, manifest: dict[str, Any], *args: str) -> str:
        return self.out("apply", "-f", "-", *args, stdin=yaml.safe_dump(manifest)).strip()


@pytest.fixture(scope="module")
def kubectl(apiserver: Any, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    binary, why = _find_kubectl()
    if binary is None:
        print(f"skipping the kubectl tests: {why}")
        pytest.skip(why)
    return Kubectl(binary, apiserver.url, tmp_path_factory.mktemp("kubectl"))


def subnet(name: str, vni: int, cidr: str, namespace: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": API_VERSION, "kind": "Subnet", "metadata": meta, "spec": {"vni": vni, "ipv4": cidr}}


def table(text: str) -> list[list[str]]:
    """Rows of kubectl's plain table output, split on runs of spaces (every cell here has no spaces)."""
    return [line.split() for line in text.splitlines() if line.strip()]


# --- discovery ------------------------------------------------------------------------------------


def test_api_resources_lists_the_three_kinds_with_short_names(kubectl: Kubectl) -> None:
    rows = table(kubectl.out("api-resources", "--api-group=network.example.com"))
    assert rows[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert sorted(rows[1:]) == [
        ["iplocks", "ipl", API_VERSION, "true", "IPLock"],
        ["networkattachments", "na", API_VERSION, "true", "NetworkAttachment"],
        ["subnets", "sn", API_VERSION, "true", "Subnet"],
    ]
    wide = kubectl.out("api-resources", "--api-group=network.example.com", "-o", "wide")
    for line in wide.splitlines()[1:]:
        assert "create,delete,deletecollection,get,list,patch,update,watch" in line, line
        assert "all,kos" in line, line
    # short names and the category resolve in kubectl get
    assert kubectl.run("get", "sn,na,ipl", "-n", "kc-empty").returncode == 0
    assert "No resources found in kc-empty namespace." in kubectl.run("get", "kos", "-n", "kc-empty").stderr


def _explain_fields(text: str) -> dict[str, str]:
    """`kubectl explain` FIELDS: each field's type and the first line of its description."""
    out: dict[str, str] = {}
    lines = text.split("FIELDS:", 1)[1].splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  ") and not line.startswith("    ") and "\t" in line:
            name, typ = line.strip().split("\t", 1)
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            out[name] = f"{typ} {following}"
    return out


def test_explain_shows_types_and_descriptions(kubectl: Kubectl) -> None:
    """kubectl explain reads /openapi/v3: every list is typed and every field described (issue 10, item 7)."""
    spec = kubectl.out("explain", "networkattachment.spec")
    assert "<no description>" not in spec and "<Object>" not in spec
    assert "DESCRIPTION:\n    The desired state of the NetworkAttachment." in spec
    fields = _explain_fields(spec)
    assert sorted(fields) == ["node", "postCreateExec", "postDeleteExec", "subnet"]
    assert fields["postCreateExec"].startswith("<[]string> A command (argv) the node's connection agent runs")
    assert fields["postDeleteExec"].startswith("<[]string> A command (argv)")
    assert fields["node"].startswith("<string> The name of the node")

    vni = kubectl.out("explain", "subnet.spec.vni")
    assert "FIELD: vni <integer>" in vni and "in [1, 2097151]" in vni and "<empty>" not in vni

    errs = _explain_fields(kubectl.out("explain", "na.status.errors"))
    assert errs["ipam"].startswith("<[]string> Why IPAM cannot give an address")
    assert errs["host"].startswith("<[]string> Why the node's connection agent cannot")
    meta = _explain_fields(kubectl.out("explain", "ipl.metadata"))
    assert meta["finalizers"].startswith("<[]string> Must be empty before the object is deleted")
    assert meta["ownerReferences"].startswith("<[]OwnerReference> List of objects depended by this object.")

    recursive = kubectl.out("explain", "networkattachment", "--recursive")
    assert "<Object>" not in recursive
    for line in ("postCreateExec\t<[]string>", "ipam\t<[]string>", "host\t<[]string>", "finalizers\t<[]string>",
                 "ownerReferences\t<[]OwnerReference>", "writes\t<[]ObjectWrite>", "command\t<[]string>"):  # fmt: skip
        assert line in recursive, line
    for kind in ("subnet", "iplock"):
        r = kubectl.out("explain", kind, "--recursive")
        assert "<Object>" not in r and "<empty>" not in r, r


# --- apply ----------------------------------------------------------------------------------------


def test_apply_creates_then_is_unchanged_then_configures_a_label(kubectl: Kubectl, http: Any) -> None:
    ns = "kc-apply"
    m = subnet("blue", 101, "10.101.0.0/24", ns, tier="web")
    assert kubectl.apply(m) == "subnet.network.example.com/blue created"
    first = http.get(http.path(ns, "subnets", "blue"))
    assert first["metadata"]["labels"] == {"tier": "web"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in first["metadata"]["annotations"]

    assert kubectl.apply(m) == "subnet.network.example.com/blue unchanged"
    again = http.get(http.path(ns, "subnets", "blue"))
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"], "unchanged must not write"

    m["metadata"]["labels"] = {"tier": "db", "team": "net"}
    assert kubectl.apply(m) == "subnet.network.example.com/blue configured"
    after = http.get(http.path(ns, "subnets", "blue"))
    assert after["metadata"]["labels"] == {"tier": "db", "team": "net"}
    assert int(after["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert after["metadata"]["uid"] == first["metadata"]["uid"]
    assert after["metadata"]["generation"] == 1, "a label change is not a spec change"
    assert after["spec"] == {"vni": 101, "ipv4": "10.101.0.0/24"}

    # removing a label from the manifest removes it from the object (three-way merge through last-applied)
    m["metadata"]["labels"] = {"tier": "db"}
    assert kubectl.apply(m) == "subnet.network.example.com/blue configured"
    assert http.get(http.path(ns, "subnets", "blue"))["metadata"]["labels"] == {"tier": "db"}

    # --dry-run=server reports without writing
    m["metadata"]["labels"] = {"tier": "cache"}
    rv = http.get(http.path(ns, "subnets", "blue"))["metadata"]["resourceVersion"]
    assert kubectl.apply(m, "--dry-run=server") == "subnet.network.example.com/blue configured (server dry run)"
    assert http.get(http.path(ns, "subnets", "blue"))["metadata"]["resourceVersion"] == rv


# --- tables ---------------------------------------------------------------------------------------


def test_get_shows_each_kinds_columns(kubectl: Kubectl, http: Any) -> None:
    ns = "kc-cols"
    kubectl.apply(subnet("red", 102, "10.102.0.0/24", ns))
    na = http.post(http.path(ns, "networkattachments"), {
        "apiVersion": API_VERSION, "kind": "NetworkAttachment",
        "metadata": {"name": "att1"}, "spec": {"node": "node-1", "subnet": "red"},
    })  # fmt: skip
    http.post(http.path(ns, "networkattachments"), {
        "apiVersion": API_VERSION, "kind": "NetworkAttachment",
        "metadata": {"name": "att2"}, "spec": {"node": "node-2", "subnet": "red"},
    })  # fmt: skip
    lock = http.post(http.path(ns, "iplocks"), {
        "apiVersion": API_VERSION, "kind": "IPLock",
        "metadata": {"name": "v1-102-10-102-0-2", "ownerReferences": [{
            "apiVersion": API_VERSION, "kind": "NetworkAttachment", "name": "att1",
            "uid": na["metadata"]["uid"], "controller": True,
        }]},
        "spec": {"subnetName": "red"},
    })  # fmt: skip
    na["status"] = {
        "ipv4": "10.102.0.2", "addressVNI": 102, "lockUID": lock["metadata"]["uid"],
        "macAddress": "0a:66:00:02:00:66", "ifcName": "kos0a6600020066", "hostIP": "192.168.7.1",
    }  # fmt: skip
    http.put(http.path(ns, "networkattachments", "att1", "status"), na)

    out = kubectl.out("get", "sn,na,ipl", "-A")
    sections = [table(s) for s in out.split("\n\n") if s.strip()]
    assert len(sections) == 3, out
    sn_t, na_t, ipl_t = sections
    assert sn_t[0] == ["NAMESPACE", "NAME", "VNI", "CIDR", "VALIDATED", "AGE"]
    assert ["kc-cols", "subnet.network.example.com/red", "102", "10.102.0.0/24", "false"] in [r[:-1] for r in sn_t]
    assert na_t[0] == ["NAMESPACE", "NAME", "SUBNET", "NODE", "IPV4", "MAC", "HOSTIP", "READY", "AGE"]
    na_rows = {r[1]: r[:-1] for r in na_t[1:]}
    assert na_rows["networkattachment.network.example.com/att1"] == [
        "kc-cols", "networkattachment.network.example.com/att1", "red", "node-1", "10.102.0.2",
        "0a:66:00:02:00:66", "192.168.7.1", "True",
    ]  # fmt: skip
    # empty cells are printed as blanks, so the not-yet-addressed NA has fewer words
    assert na_rows["networkattachment.network.example.com/att2"] == [
        "kc-cols", "networkattachment.network.example.com/att2", "red", "node-2", "False",
    ]  # fmt: skip
    assert ipl_t[0] == ["NAMESPACE", "NAME", "SUBNET", "OWNER", "AGE"]
    assert ["kc-cols", "iplock.network.example.com/v1-102-10-102-0-2", "red", "att1"] in [r[:-1] for r in ipl_t]

    # one kind: plain names; -o wide adds the priority-1 columns after AGE, as kubectl shows built-in kinds
    wide = table(kubectl.out("get", "na", "-n", ns, "-o", "wide"))
    assert wide[0] == ["NAME", "SUBNET", "NODE", "IPV4", "MAC", "HOSTIP", "READY", "AGE", "VNI", "INTERFACE", "ERRORS"]
    row = wide[1]
    assert row[:7] == ["att1", "red", "node-1", "10.102.0.2", "0a:66:00:02:00:66", "192.168.7.1", "True"]
    assert row[8:] == ["102", "kos0a6600020066"]

    # selectors go through kubectl as query parameters
    assert [r[0] for r in table(kubectl.out("get", "na", "-n", ns, "--field-selector", "spec.node=node-2"))[1:]] == [
        "att2"
    ]
    assert [r[0] for r in table(kubectl.out("get", "na", "-n", ns, "--field-selector", "status.ipv4!="))[1:]] == [
        "att1"
    ]
    bad = kubectl.run("get", "na", "-n", ns, "--field-selector", "spec.colour=red", check=False)
    assert bad.returncode != 0
    assert 'NetworkAttachment does not have field with label "spec.colour"' in bad.stderr

    # pagination: kubectl follows continue tokens
    names = [r[0] for r in table(kubectl.out("get", "na", "-n", ns, "--chunk-size=1", "--no-headers"))]
    assert names == ["att1", "att2"]


# --- output formats -------------------------------------------------------------------------------


def test_get_yaml_and_json_round_trip(kubectl: Kubectl, http: Any) -> None:
    ns = "kc-out"
    kubectl.apply(subnet("green", 103, "10.103.0.0/24", ns, app="one"))
    stored = http.get(http.path(ns, "subnets", "green"))

    as_yaml = yaml.safe_load(kubectl.out("get", "sn", "green", "-n", ns, "-o", "yaml"))
    as_json = json.loads(kubectl.out("get", "subnet", "green", "-n", ns, "-o", "json"))
    assert as_json == stored
    # YAML turns timestamps into strings identical to the JSON ones; compare through JSON text
    assert json.loads(json.dumps(as_yaml, default=str)) == stored
    assert kubectl.out("get", "sn", "green", "-n", ns, "-o", "jsonpath={.spec.ipv4} {.spec.vni}") == "10.103.0.0/24 103"

    # the YAML goes back through `kubectl replace` (it carries the resourceVersion)...
    as_yaml["metadata"]["labels"]["app"] = "two"
    assert kubectl.out("replace", "-f", "-", stdin=yaml.safe_dump(as_yaml)).strip() == (
        "subnet.network.example.com/green replaced"
    )
    replaced = http.get(http.path(ns, "subnets", "green"))
    assert replaced["metadata"]["labels"] == {"app": "two"}
    # ...and the same YAML again is now stale: kubectl shows the server's Conflict
    stale = kubectl.run("replace", "-f", "-", stdin=yaml.safe_dump(as_yaml), check=False)
    assert stale.returncode != 0
    assert "Conflict" in stale.stderr and "the object has been modified" in stale.stderr

    # the JSON of a list is a list of the same objects, and `kubectl create` takes a JSON document
    lst = json.loads(kubectl.out("get", "sn", "-n", ns, "-o", "json"))
    assert lst["kind"] == "List" and [i["metadata"]["name"] for i in lst["items"]] == ["green"]
    copy = {"apiVersion": API_VERSION, "kind": "Subnet", "metadata": {"name": "green2", "namespace": ns},
            "spec": {"vni": 103, "ipv4": "10.103.1.0/24"}}  # fmt: skip
    assert kubectl.out("create", "-f", "-", stdin=json.dumps(copy)).strip() == (
        "subnet.network.example.com/green2 created"
    )


# --- delete ---------------------------------------------------------------------------------------


def test_delete(kubectl: Kubectl, http: Any) -> None:
    ns = "kc-del"
    m = subnet("gone", 104, "10.104.0.0/24", ns)
    kubectl.apply(m)
    assert kubectl.out("delete", "sn", "gone", "-n", ns).strip() == 'subnet.network.example.com "gone" deleted'
    assert http.request("GET", http.path(ns, "subnets", "gone")).status == 404
    missing = kubectl.run("get", "sn", "gone", "-n", ns, check=False)
    assert missing.returncode != 0
    assert 'Error from server (NotFound): subnets.network.example.com "gone" not found' in missing.stderr
    again = kubectl.run("delete", "sn", "gone", "-n", ns, check=False)
    assert again.returncode != 0 and "NotFound" in again.stderr
    assert kubectl.run("delete", "sn", "gone", "-n", ns, "--ignore-not-found").returncode == 0

    # delete -f, delete by label, and the garbage collector removing an NA's IPLock
    kubectl.apply(m)
    assert kubectl.out("delete", "-f", "-", stdin=yaml.safe_dump(m)).strip() == (
        'subnet.network.example.com "gone" deleted'
    )
    for i in range(3):
        kubectl.apply(subnet(f"s{i}", 104, f"10.104.{i}.0/24", ns, batch="b1" if i < 2 else "b2"))
    out = kubectl.out("delete", "sn", "-n", ns, "-l", "batch=b1")
    assert sorted(out.split("\n")[:-1]) == [
        'subnet.network.example.com "s0" deleted',
        'subnet.network.example.com "s1" deleted',
    ]
    assert [r[0] for r in table(kubectl.out("get", "sn", "-n", ns, "--no-headers"))] == ["s2"]

    na = http.post(http.path(ns, "networkattachments"), {
        "apiVersion": API_VERSION, "kind": "NetworkAttachment",
        "metadata": {"name": "att"}, "spec": {"node": "n1", "subnet": "s2"},
    })  # fmt: skip
    http.post(http.path(ns, "iplocks"), {
        "apiVersion": API_VERSION, "kind": "IPLock",
        "metadata": {"name": "v1-104-10-104-2-2", "ownerReferences": [{
            "apiVersion": API_VERSION, "kind": "NetworkAttachment", "name": "att",
            "uid": na["metadata"]["uid"], "controller": True,
        }]},
        "spec": {"subnetName": "s2"},
    })  # fmt: skip
    kubectl.out("delete", "na", "att", "-n", ns, "--wait=true")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not kubectl.out("get", "ipl", "-n", ns, "--no-headers", "--ignore-not-found").strip():
            break
        time.sleep(0.05)
    else:
        pytest.fail("the IPLock owned by the deleted NA was not garbage-collected within 15 s")


# --- watch ----------------------------------------------------------------------------------------


class _Lines:
    """A background process's stdout, line by line, readable with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def join(self) -> None:
        self._t.join(timeout=10)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out waiting on kubectl's output; so far: {self.lines}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                if predicate(self.lines):
                    break
                pytest.fail(f"kubectl exited ({self.proc.poll()}) before the expected output; got: {self.lines}")
            self.lines.append(line)
        return self.lines


@pytest.fixture
def background(kubectl: Kubectl, tmp_path: Path) -> Iterator[Any]:
    """Start kubectl in the background (stdout read line by line, stderr to a file); always stopped afterwards."""
    started: list[tuple[_Lines, Any]] = []

    def start(*args: str) -> _Lines:
        err = (tmp_path / f"kubectl-{len(started)}.stderr").open("w")
        p = subprocess.Popen(kubectl.argv(*args), stdout=subprocess.PIPE, stderr=err, text=True, env=kubectl.env)
        lines = _Lines(p)
        started.append((lines, err))
        return lines

    try:
        yield start
    finally:
        for lines, err in started:
            p = lines.proc
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
            lines.join()
            if p.stdout is not None:
                p.stdout.close()
            err.close()


def _events(lines: list[str]) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in (line.split() for line in lines) if r and r[0] in ("ADDED", "MODIFIED", "DELETED")]


def test_get_watch_streams_add_modify_delete(kubectl: Kubectl, background: Any) -> None:
    ns = "kc-watch"
    kubectl.apply(subnet("before", 105, "10.105.0.0/24", ns))
    w = background("get", "sn", "-n", ns, "-w", "--output-watch-events", "--request-timeout=60s")
    w.wait_for(lambda ls: ("ADDED", "before") in _events(ls))

    kubectl.apply(subnet("during", 105, "10.105.1.0/24", ns))
    kubectl.out("label", "sn", "during", "-n", ns, "phase=two")
    kubectl.out("delete", "sn", "during", "-n", ns)
    lines = w.wait_for(lambda ls: ("DELETED", "during") in _events(ls))
    assert lines[0].split() == ["EVENT", "NAME", "VNI", "CIDR", "VALIDATED", "AGE"]
    assert _events(lines) == [("ADDED", "before"), ("ADDED", "during"), ("MODIFIED", "during"),
                              ("DELETED", "during")]  # fmt: skip
    for line in lines[1:]:
        assert line.split()[2:5] in (["105", "10.105.0.0/24", "false"], ["105", "10.105.1.0/24", "false"]), line

    # a watch of JSON objects (no tables): the label change is visible in the MODIFIED object
    w2 = background("get", "sn", "before", "-n", ns, "-w", "-o", "json", "--output-watch-events",
                    "--request-timeout=60s")  # fmt: skip
    w2.wait_for(lambda ls: len(ls) >= 1)
    kubectl.out("label", "sn", "before", "-n", ns, "seen=yes")
    w2.wait_for(lambda ls: len(ls) >= 2)
    first, second = (json.loads(line) for line in w2.lines[:2])  # one event per line
    assert (first["type"], second["type"]) == ("ADDED", "MODIFIED")
    assert second["object"]["metadata"]["labels"] == {"seen": "yes"}


def test_wait_for_a_status_condition(kubectl: Kubectl, http: Any, background: Any) -> None:
    """`kubectl wait --for=jsonpath=...` is a watch on one object by name; a status write releases it."""
    ns = "kc-wait"
    kubectl.apply(subnet("pending", 106, "10.106.0.0/24", ns))
    w = background("wait", "sn/pending", "-n", ns, "--for=jsonpath={.status.validated}=true", "--timeout=30s")
    obj = http.get(http.path(ns, "subnets", "pending"))
    obj["status"] = {"validated": True}
    http.put(http.path(ns, "subnets", "pending", "status"), obj)
    w.wait_for(lambda ls: "subnet.network.example.com/pending condition met" in ls)
    assert w.proc.wait(timeout=30) == 0


# --- patch and label ------------------------------------------------------------------------------


def test_patch_merge_and_json(kubectl: Kubectl, http: Any) -> None:
    ns = "kc-patch"
    kubectl.apply(subnet("p", 107, "10.107.0.0/24", ns))
    rv0 = http.get(http.path(ns, "subnets", "p"))["metadata"]["resourceVersion"]

    out = kubectl.out("patch", "sn", "p", "-n", ns, "--type=merge", "-p", '{"metadata":{"labels":{"k":"v"}}}')
    assert out.strip() == "subnet.network.example.com/p patched"
    out = kubectl.out("patch", "sn", "p", "-n", ns, "--type=merge", "-p", '{"metadata":{"labels":{"k":"v"}}}')
    assert out.strip() == "subnet.network.example.com/p patched (no change)"

    ops = json.dumps(
        [
            {"op": "add", "path": "/metadata/annotations", "value": {"note": "hi"}},
            {"op": "remove", "path": "/metadata/labels/k"},
        ]
    )
    assert kubectl.out("patch", "sn", "p", "-n", ns, "--type=json", "-p", ops).strip() == (
        "subnet.network.example.com/p patched"
    )
    obj = http.get(http.path(ns, "subnets", "p"))
    assert obj["metadata"].get("labels", {}) == {}
    assert obj["metadata"]["annotations"]["note"] == "hi"
    assert int(obj["metadata"]["resourceVersion"]) == int(rv0) + 2

    # status through the subresource; the main resource ignores status
    out = kubectl.out("patch", "sn", "p", "-n", ns, "--subresource=status", "--type=merge", "-p",
                      '{"status":{"validated":true}}')  # fmt: skip
    assert out.strip() == "subnet.network.example.com/p patched"
    assert http.get(http.path(ns, "subnets", "p"))["status"] == {"validated": True}
    out = kubectl.out("patch", "sn", "p", "-n", ns, "--type=merge", "-p", '{"status":{"validated":false}}')
    assert out.strip() == "subnet.network.example.com/p patched (no change)"

    # immutable spec: the server's message names the field
    bad = kubectl.run("patch", "sn", "p", "-n", ns, "--type=merge", "-p", '{"spec":{"vni":108}}', check=False)
    assert bad.returncode != 0
    assert "spec.vni: Forbidden: attempt to update immutable field" in bad.stderr
    # kubectl's default patch type (strategic merge) is refused with a hint at what works
    smp = kubectl.run("patch", "sn", "p", "-n", ns, "-p", '{"metadata":{"labels":{"a":"b"}}}', check=False)
    assert smp.returncode != 0
    assert "--type=merge" in smp.stderr


def test_label(kubectl: Kubectl, http: Any) -> None:
    ns = "kc-label"
    kubectl.apply(subnet("l", 109, "10.109.0.0/24", ns))
    kubectl.apply(subnet("m", 109, "10.109.1.0/24", ns))
    assert kubectl.out("label", "sn", "l", "-n", ns, "env=prod").strip() == "subnet.network.example.com/l labeled"
    refused = kubectl.run("label", "sn", "l", "-n", ns, "env=dev", check=False)
    assert refused.returncode != 0 and "--overwrite is false" in refused.stderr
    kubectl.out("label", "sn", "l", "-n", ns, "env=dev", "--overwrite")
    assert http.get(http.path(ns, "subnets", "l"))["metadata"]["labels"] == {"env": "dev"}
    assert [r[0] for r in table(kubectl.out("get", "sn", "-n", ns, "-l", "env=dev", "--no-headers"))] == ["l"]
    assert [r[0] for r in table(kubectl.out("get", "sn", "-n", ns, "-l", "env!=dev", "--no-headers"))] == ["m"]
    kubectl.out("label", "sn", "--all", "-n", ns, "zone=a")
    rows = table(kubectl.out("get", "sn", "-n", ns, "--show-labels", "--no-headers"))
    assert {r[0]: r[-1] for r in rows} == {"l": "env=dev,zone=a", "m": "zone=a"}
    assert kubectl.out("label", "sn", "l", "-n", ns, "env-").strip() == "subnet.network.example.com/l unlabeled"
    assert http.get(http.path(ns, "subnets", "l"))["metadata"]["labels"] == {"zone": "a"}
    bad = kubectl.run("get", "sn", "-n", ns, "-l", "a in (b", check=False)
    assert bad.returncode != 0


# --- errors ---------------------------------------------------------------------------------------


def test_invalid_subnets_print_the_servers_422_naming_the_field(kubectl: Kubectl, http: Any) -> None:
    ns = "kc-err"
    r = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(subnet("zero", 0, "10.110.0.0/24", ns)), check=False)
    assert r.returncode != 0
    assert 'The Subnet "zero" is invalid' in r.stderr
    assert "spec.vni: Invalid value: 0: must be in [1,2097151]" in r.stderr

    r = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(subnet("hb", 110, "10.110.0.7/24", ns)), check=False)
    assert r.returncode != 0
    assert 'spec.ipv4: Invalid value: "10.110.0.7/24": has host bits set; did you mean 10.110.0.0/24?' in r.stderr

    kubectl.apply(subnet("first", 110, "10.110.0.0/24", ns))
    r = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(subnet("second", 110, "10.110.0.128/25", ns)),
                    check=False)  # fmt: skip
    assert r.returncode != 0
    assert "spec.ipv4: Forbidden: subnets with same VNI must have disjoint CIDRs, but CIDR overlaps with" in r.stderr
    assert "kc-err/first's (10.110.0.0/24)" in r.stderr

    # unknown fields: kubectl asks for strict server-side field validation
    m = subnet("typo", 111, "10.111.0.0/24", ns)
    m["spec"]["vnii"] = 3
    r = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(m), check=False)
    assert r.returncode != 0
    assert 'unknown field "spec.vnii"' in r.stderr
    assert [i["metadata"]["name"] for i in http.get(http.path(ns, "subnets"))["items"]] == ["first"]


def test_validate_warn_prints_the_servers_warning(kubectl: Kubectl, http: Any) -> None:
    ns = "kc-warn"
    m = subnet("typo", 113, "10.113.0.0/24", ns)
    m["spec"]["vnii"] = 3
    r = kubectl.run("apply", "-f", "-", "--validate=warn", stdin=yaml.safe_dump(m))
    assert r.stdout.strip() == "subnet.network.example.com/typo created"
    assert http.get(http.path(ns, "subnets", "typo"))["spec"] == {"vni": 113, "ipv4": "10.113.0.0/24"}
    assert 'Warning: unknown field "spec.vnii"' in r.stderr


def test_create_of_an_existing_subnet_says_already_exists(kubectl: Kubectl) -> None:
    ns = "kc-exists"
    m = yaml.safe_dump(subnet("dup", 112, "10.112.0.0/24", ns))
    kubectl.out("create", "-f", "-", stdin=m)
    r = kubectl.run("create", "-f", "-", stdin=m, check=False)
    assert r.returncode != 0
    assert (
        'Error from server (AlreadyExists): error when creating "STDIN": subnets.network.example.com "dup" already'
        " exists" in r.stderr
    ), r.stderr
