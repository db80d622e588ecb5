"""The manifests' command lines are ones kos accepts, with the files they name where the pod will have them,
and the probes ask kos what kos answers, on the ports kos listens on — so deploy/ cannot go stale as flags,
paths and ports change.

For each kos container of each rendered overlay: Kubernetes' `$(VAR)` expansion is done with sample values of
the downward API fields, every volume is laid out under a temporary root with what the operator puts in it
(docs/deploy.md: the files `kos certs` made; the rendered ConfigMaps; a ServiceAccount token where one is
mounted), the paths in the arguments are moved under that root, and the arguments go through kos' own parser
and settings checks (`kos.cli.main.SUBCOMMANDS`: no process is started). etcd's command line is run for real
by test_etcd_as_deployed.py.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import types
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import NODE, OVERLAYS, SERVER, documented_secrets, find, workloads
from prometheus_client import CollectorRegistry

from kos.apiserver.auth.gate import ANONYMOUS_PATHS
from kos.apiserver.routes import PROBE_PATHS
from kos.cli.apiserver import ServeSettings, webhook_endpoint
from kos.cli.main import SUBCOMMANDS
from kos.cli.settings import SettingsParser, UsageError
from kos.http.probes import Probes
from kos.storage.url import _etcd_tls

FIELD_SAMPLES = {"spec.nodeName": NODE, "status.hostIP": "192.0.2.10", "metadata.name": "kos-pod-0"}
"""What the downward API gives a pod, for `$(VAR)` expansion."""

SECRETS = documented_secrets()
"""Secret → key → file made by `kos certs` (the `pki` fixture): docs/deploy.md's `kubectl create secret` lines."""
OPERATOR_CONFIGMAPS = {"kos-front-proxy-ca": {"ca.crt": "pki/front-proxy-ca.crt"}}
"""ConfigMaps the operator creates (not rendered): the front proxy's CA, copied from kube-system."""
HOST_PATHS = {"/etc/kos/agent": {"kubeconfig": f"nodes/{NODE}.kubeconfig"}}
"""What the node provides in its host paths (the others are sockets and directories: left empty here)."""
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def kos_containers(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(w, c) for w in workloads(objects) for c in w["spec"]["template"]["spec"]["containers"]
            if c["image"].rsplit("/", 1)[-1].split(":")[0] == "kos"]  # fmt: skip


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of command and args; a reference to no variable fails the test."""
    unknown = [m for m in re.findall(r"\$\((\w+)\)", value) if m not in env]
    assert not unknown, f"{value!r} refers to undefined variables {unknown}"
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value)


def container_env(c: dict[str, Any]) -> dict[str, str]:
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = FIELD_SAMPLES[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


class PodRoot:
    """A pod's file system as its container sees it, under `root`: every volume mount filled."""

    def __init__(self, root: Path, pki: Path, objects: list[dict[str, Any]], pod: dict[str, Any], c: dict[str, Any],
                 claims: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]  # fmt: skip
        self.root, self.mounts = root, []
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        volumes |= {v["metadata"]["name"]: {"name": v["metadata"]["name"], "emptyDir": {}} for v in claims}
        for m in c.get("volumeMounts", []):
            self.fill(self.at(m["mountPath"]), volumes[m["name"]], pki, objects)
            self.mounts.append(m["mountPath"])
        if pod.get("automountServiceAccountToken"):
            sa = self.at(SERVICE_ACCOUNT)
            sa.mkdir(parents=True)
            shutil.copy(pki / "pki" / "ca.crt", sa / "ca.crt")
            (sa / "token").write_text("a-projected-token")
            self.mounts.append(SERVICE_ACCOUNT)

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def fill(self, where: Path, volume: dict[str, Any], pki: Path, objects: list[dict[str, Any]]) -> None:
        where.mkdir(parents=True)
        files: dict[str, bytes] = {}
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            assert name in SECRETS, f"docs/deploy.md does not say how to make the Secret {name}"
            files = {k: (pki / f).read_bytes() for k, f in SECRETS[name].items()}
        elif "configMap" in volume:
            name = volume["configMap"]["name"]
            rendered = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
            if rendered:
                files = {k: self.rebase(v).encode() for k, v in rendered[0]["data"].items()}
            else:
                assert name in OPERATOR_CONFIGMAPS, f"ConfigMap {name} is neither rendered nor made by the operator"
                files = {k: (pki / f).read_bytes() for k, f in OPERATOR_CONFIGMAPS[name].items()}
        elif "hostPath" in volume:
            files = {k: (pki / f).read_bytes() for k, f in HOST_PATHS.get(volume["hostPath"]["path"], {}).items()}
        else:
            assert set(volume) == {"name", "emptyDir"}, f"the test does not know volume {volume}"
        for key, data in files.items():
            (where / key).write_bytes(data)

    def rebase(self, text: str) -> str:
        """`text` with every path under a mount (and the ServiceAccount's) moved under the root."""
        mounts = sorted({*self.mounts, SERVICE_ACCOUNT}, key=len, reverse=True)
        pattern = r"(?<![\w./-])(" + "|".join(map(re.escape, mounts)) + r")/"  # one pass: nothing moved twice
        return re.sub(pattern, lambda m: str(self.at(m.group(1))) + "/", text)


def parse(argv: list[str]) -> Any:
    """kos' parser and settings checks for `kos <argv>` (what `kos.cli.main.main` does before running)."""
    assert argv and argv[0] in SUBCOMMANDS, f"{argv[:1]} is no kos command"
    module: Any = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    p = SettingsParser(prog=f"kos {argv[0]}")
    module.add_arguments(p)
    try:
        return module.settings_from(p.parse_args(argv[1:]))
    except UsageError as e:
        pytest.fail(f"kos {' '.join(argv)}: {e}")


@pytest.fixture(autouse=True)
def _no_kos_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """KOS_<FLAG> variables of the test's environment would stand in for flags the manifests do not give."""
    for name in list(os.environ):
        if name.startswith("KOS_"):
            monkeypatch.delenv(name)


def command_line(objects: list[dict[str, Any]], w: dict[str, Any], c: dict[str, Any], pki: Path, tmp: Path,
                 ) -> tuple[list[str], PodRoot]:  # fmt: skip
    assert "command" not in c, f"{w['metadata']['name']}: the image's entrypoint is kos; give args only"
    root = PodRoot(tmp / w["metadata"]["name"], pki, objects, w["spec"]["template"]["spec"], c)
    env = container_env(c)
    return [root.rebase(expand(a, env)) for a in c["args"]], root


def listen_port(settings: Any) -> int:
    """The port the process serves its probes on: the apiserver's --listen, the others' --metrics-listen."""
    if isinstance(settings, ServeSettings):
        return settings.server.port
    if hasattr(settings, "metrics_listen"):
        return int(settings.metrics_listen[1])
    return int(settings.settings.metrics_port)


def serves_tls(settings: Any) -> bool:
    if isinstance(settings, ServeSettings):
        return settings.tls is not None
    return not settings.tls.insecure


def answers(settings: Any, path: str) -> bool:
    """Whether the process answers `path` to the kubelet (no credentials) with 200 when healthy."""
    if isinstance(settings, ServeSettings):
        return path in PROBE_PATHS and path in ANONYMOUS_PATHS
    reply = asyncio.run(Probes(CollectorRegistry()).serve(types.SimpleNamespace(path=path, method="GET")))  # type: ignore[arg-type]
    return bool(reply.status == 200)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kos_command_line_parses(overlay: str, rendered: dict[str, list[dict[str, Any]]], pki: Path,
                                       tmp_path: Path) -> None:  # fmt: skip
    objects = rendered[overlay]
    seen = set()
    for w, c in kos_containers(objects):
        argv, _ = command_line(objects, w, c, pki, tmp_path)
        settings = parse(argv)
        seen.add(argv[0])
        if argv[0] == "apiserver":
            tls = _etcd_tls(settings.server.storage, settings.server.storage.partition("?")[2])
            assert tls is not None, "etcd without TLS"
            for f in (tls.cacert, tls.cert, tls.key):
                assert f is not None and f.is_file(), f"--storage names {f}, which the pod does not have"
            tls.load()  # PEM, and the key is the certificate's
            auth = settings.auth
            assert auth.client_ca_file is not None
            if overlay == "aggregated":
                assert auth.requestheader_client_ca_file is not None
                assert auth.requestheader_allowed_names == ("front-proxy-client",)
                for kubeconfig in (auth.authentication_kubeconfig, auth.authorization_kubeconfig):
                    endpoint = webhook_endpoint(kubeconfig)  # loads it: the CA and token files must be there
                    assert endpoint is not None and endpoint.headers == {"Authorization": "Bearer a-projected-token"}
            else:
                assert auth.authentication_kubeconfig is None and auth.requestheader_client_ca_file is None
        elif argv[0] == "controller-manager":
            assert settings.settings.server == SERVER
            assert settings.settings.leader_election is not None
        elif argv[0] == "agent":
            assert (settings.agent.node, settings.fabric) == (NODE, "ovs")
            assert settings.client.server == SERVER
        assert serves_tls(settings), f"{w['metadata']['name']} serves plain HTTP"
    assert seen == {"apiserver", "controller-manager", "agent"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_what_kos_serves_where_it_listens(overlay: str, rendered: dict[str, list[dict[str, Any]]],
                                                    pki: Path, tmp_path: Path) -> None:  # fmt: skip
    objects = rendered[overlay]
    for w, c in kos_containers(objects):
        name = w["metadata"]["name"]
        settings = parse(command_line(objects, w, c, pki, tmp_path)[0])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert list(ports.values()) == [listen_port(settings)], f"{name}: containerPort is not the listen port"
        probes = [c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c]
        assert "livenessProbe" in c and "readinessProbe" in c, name
        for probe in probes:
            get = probe["httpGet"]
            port = ports.get(get["port"], get["port"])
            assert port == listen_port(settings), (
                f"{name}: probe on {get['port']}, kos listens on {listen_port(settings)}"
            )
            assert get.get("scheme", "HTTP") == ("HTTPS" if serves_tls(settings) else "HTTP"), name
            assert answers(settings, get["path"]), f"{name}: kos does not answer {get['path']}"
        if c["args"][0] == "agent":
            assert c["ports"][0]["hostPort"] == listen_port(settings)
    service = find(objects, "Service", "kos-apiserver")["spec"]["ports"][0]
    (apiserver,) = [c for w, c in kos_containers(objects) if c["args"][0] == "apiserver"]
    assert service["targetPort"] in {p["name"] for p in apiserver["ports"]}


def test_answers_can_fail() -> None:
    """The probe check above can fail: a path kos does not serve is not answered."""
    settings = types.SimpleNamespace(tls=types.SimpleNamespace(insecure=False), metrics_listen=("0.0.0.0", 1))
    assert not answers(settings, "/health")
    assert answers(settings, "/livez")


def test_etcd_files(rendered: dict[str, list[dict[str, Any]]], pki: Path, tmp_path: Path) -> None:
    """etcd's TLS files are where its Secret puts them (its flags: test_etcd_as_deployed runs the command)."""
    objects = rendered["standalone"]
    sts = find(objects, "StatefulSet", "kos-etcd")
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    root = PodRoot(tmp_path, pki, objects, pod, c, sts["spec"]["volumeClaimTemplates"])
    env = container_env(c)
    files = [expand(a, env).partition("=")[2] for a in c["command"][1:] if a.partition("=")[0].endswith("-file")]
    assert len(files) == 6  # serving and peer: certificate, key, CA each
    for f in files:
        assert Path(root.rebase(f)).is_file(), f"{f}: no such file in the pod"


def test_the_documented_secrets_are_the_mounted_ones(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """docs/deploy.md creates exactly the Secrets the pods mount (the rendered kos-apiserver-ca aside)."""
    mounted = {v["secret"]["secretName"] for objs in rendered.values() for w in workloads(objs)
               for v in w["spec"]["template"]["spec"].get("volumes", []) if "secret" in v}  # fmt: skip
    assert set(SECRETS) == mounted
