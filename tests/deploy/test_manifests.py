"""deploy/ renders, every object is valid for Kubernetes, and the overlays hold what docs/deploy.md promises.

Strict validation (kubernetes-validate: the OpenAPI schemas of Kubernetes `KUBERNETES_VERSION`, unknown
fields refused) catches what kubectl apply would reject, and a misspelt field that it would silently drop.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import KOS_SERVICE_ACCOUNTS, KOS_WORKLOADS, NAMESPACE, OVERLAYS, find, workloads

KUBERNETES_VERSION = "1.32.0"
"""The Kubernetes release the manifests are checked against (the oldest the docs support)."""

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="the PyPI package kubernetes-validate is not installed (dev extras: make test)"
)


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_strictly(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Every object validates; a kind with no schema in kubernetes-validate (a custom resource) is named on
    standard output and the rest validated, but every kind deploy/ itself renders must have one."""
    objects = rendered[overlay]
    assert objects, f"{overlay} rendered nothing"
    failures, unschemed = [], set()
    for obj in objects:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            validate(obj)
        except kubernetes_validate.SchemaNotFoundError:
            unschemed.add(f"{obj['apiVersion']} {obj['kind']}")
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{what}: {e.message} at {'.'.join(map(str, e.path))}")
    if unschemed:
        print(f"{overlay}: no Kubernetes {KUBERNETES_VERSION} schema for {', '.join(sorted(unschemed))}: not validated")
    assert not failures, "\n".join(failures)
    own = {"Namespace", "Service", "ServiceAccount", "StatefulSet", "Deployment", "DaemonSet", "PodDisruptionBudget",
           "NetworkPolicy", "APIService", "ClusterRole", "ClusterRoleBinding", "RoleBinding", "ConfigMap", "Secret"}  # fmt: skip
    assert not {u for u in unschemed if u.split()[1] in own}, "a kind deploy/ renders has no schema"


def test_strict_validation_refuses_an_unknown_field(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The check above can fail: a misspelt field (one kubectl would drop) is refused."""
    bad = copy.deepcopy(find(rendered["standalone"], "Deployment", "kos-apiserver"))
    bad["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {"httpGet": {"path": "/readyz", "port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_components_and_placement(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    objs = rendered[overlay]
    find(objs, "Namespace", NAMESPACE)
    for o in objs:
        if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "APIService", "RoleBinding"):
            assert o["metadata"].get("namespace") == NAMESPACE, f"{o['kind']}/{o['metadata']['name']}"
    etcd = find(objs, "StatefulSet", "kos-etcd")
    assert etcd["spec"]["replicas"] == 3
    assert etcd["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    etcd_args = etcd["spec"]["template"]["spec"]["containers"][0]["command"]
    for flag in ("--client-cert-auth", "--trusted-ca-file=", "--cert-file=", "--peer-client-cert-auth",
                 "--peer-trusted-ca-file=", "--peer-cert-file="):  # fmt: skip
        assert any(a.startswith(flag) for a in etcd_args), f"etcd without {flag}"
    assert all("http://" not in a for a in etcd_args if "-urls=" in a and "metrics" not in a), "etcd in clear"
    apiserver = find(objs, "Deployment", "kos-apiserver")
    assert apiserver["spec"]["replicas"] == 2
    assert "podAntiAffinity" in apiserver["spec"]["template"]["spec"]["affinity"]
    find(objs, "PodDisruptionBudget", "kos-apiserver")
    assert find(objs, "Deployment", "kos-controller-manager")["spec"]["replicas"] == 2
    assert sorted(w["metadata"]["name"] for w in workloads(objs)) == sorted(KOS_WORKLOADS)
    for w in workloads(objs):
        pod = w["spec"]["template"]["spec"]
        role = "workload" if w["kind"] == "DaemonSet" else "control"
        assert pod["nodeSelector"] == {f"role.kos.example.com/{role}": "true"}, w["metadata"]["name"]


def test_agent_daemonset(rendered: dict[str, list[dict[str, Any]]]) -> None:
    ds = find(rendered["standalone"], "DaemonSet", "kos-agent")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    (agent,) = pod["containers"]
    assert agent["securityContext"]["privileged"] is True
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert mounts["/var/run/netns"]["mountPropagation"] == "Bidirectional"
    assert "/var/run/openvswitch" in mounts
    assert mounts["/etc/kos/agent"]["readOnly"] is True
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in agent["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "HOST_IP": "status.hostIP"}
    assert "--node=$(NODE_NAME)" in agent["args"]


def test_least_privilege(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """No kos pod holds a Kubernetes token but the aggregated apiserver's; everything but the agent runs as a
    non-root user with no capabilities; the only Kubernetes rights of kos' ServiceAccounts are the aggregated
    apiserver's two."""
    for overlay, objs in rendered.items():
        for w in workloads(objs):
            name, pod = w["metadata"]["name"], w["spec"]["template"]["spec"]
            wants_token = overlay == "aggregated" and name == "kos-apiserver"
            assert pod["automountServiceAccountToken"] is wants_token, (overlay, name)
            if w["kind"] == "DaemonSet":
                continue
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
                assert sc["readOnlyRootFilesystem"] is True, name
    for overlay, objs in rendered.items():
        bindings = [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
                    and any(s.get("name") in KOS_SERVICE_ACCOUNTS for s in o.get("subjects", []))]  # fmt: skip
        granted = sorted((b["kind"], b["roleRef"]["name"], b["metadata"].get("namespace", "")) for b in bindings)
        if overlay == "standalone":
            assert granted == [], "standalone: a kos ServiceAccount has Kubernetes rights"
            continue
        assert granted == [("ClusterRoleBinding", "system:auth-delegator", ""),
                           ("RoleBinding", "extension-apiserver-authentication-reader", "kube-system")]  # fmt: skip
        for b in bindings:
            assert b["subjects"] == [{"kind": "ServiceAccount", "name": "kos-apiserver", "namespace": NAMESPACE}]


def test_aggregated_apiservice_trusts_the_kos_ca(pki: Path, rendered: dict[str, list[dict[str, Any]]]) -> None:
    objs = rendered["aggregated"]
    svc = find(objs, "APIService", "v1alpha1.network.example.com")["spec"]
    assert (svc["group"], svc["version"]) == ("network.example.com", "v1alpha1")
    assert svc["service"] == {"name": "kos-apiserver", "namespace": NAMESPACE, "port": 443}
    assert "insecureSkipTLSVerify" not in svc
    assert base64.b64decode(svc["caBundle"]) == (pki / "pki" / "ca.crt").read_bytes()
    find(objs, "Service", "kos-apiserver")
    roles = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ClusterRole"}
    aggregates = {k for r in roles.values() for k in r["metadata"]["labels"] if k.startswith("rbac.authorization")}
    assert aggregates == {f"rbac.authorization.k8s.io/aggregate-to-{r}" for r in ("view", "edit", "admin")}
    view = roles["kos:network-view"]["rules"]
    assert {v for rule in view for v in rule["verbs"]} == {"get", "list", "watch"}
    edit = roles["kos:network-edit"]["rules"]
    assert not [r for rule in edit for r in rule["resources"] if r.endswith("/status") or r == "iplocks"]


def test_no_secret_material_is_rendered(pki: Path, rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Private keys stay out of deploy/: the only Secret rendered is the aggregated overlay's CA certificate."""
    for overlay, objs in rendered.items():
        secrets = [o["metadata"]["name"] for o in objs if o["kind"] == "Secret"]
        assert secrets == (["kos-apiserver-ca"] if overlay == "aggregated" else []), overlay
    ca = find(rendered["aggregated"], "Secret", "kos-apiserver-ca")
    assert list(ca["data"]) == ["ca.crt"]
    assert b"PRIVATE KEY" not in base64.b64decode(ca["data"]["ca.crt"])
