"""The certificates docs/deploy.md makes are the ones the deployment needs, and the manifest's etcd command
line works with them.

* Every host name a client uses is in the certificate it is served (the apiservers' names in the kos CA's
  serving certificate; every etcd member's name, for clients and for peers, in etcd's).
* The StatefulSet's etcd command line, run for real: three members on loopback (the pods' DNS names and
  ports replaced by 127.0.0.1 and free ports, which the certificate also names), with the files docs/deploy.md
  puts in the Secret kos-etcd-tls, TLS between peers as the manifest sets it (the members form a cluster); kos' etcd client, given the
  apiservers' --storage query with the files of kos-etcd-client-tls, writes and reads; a certificate of the kos
  CA (not etcd's) is refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from deploy_helpers import SERVER, find

from kos.storage.interface import Unavailable
from kos.storage.url import open_store

MEMBERS = 3


def sans(cert: Path) -> list[str]:
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    names = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [*names.get_values_for_type(x509.DNSName), *map(str, names.get_values_for_type(x509.IPAddress))]


def covered(host: str, names: list[str]) -> bool:
    """RFC 6125 matching: an exact name or address, or `*.rest` for one more label on the left."""
    if host in names:
        return True
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return False
    first, _, rest = host.partition(".")
    return bool(first) and f"*.{rest}" in names


def etcd_command(objects: list[dict[str, Any]]) -> list[str]:
    return list(find(objects, "StatefulSet", "kos-etcd")["spec"]["template"]["spec"]["containers"][0]["command"])


def hosts_in(urls: str) -> list[str]:
    return [urllib.parse.urlsplit(u if "://" in u else f"x://{u}").hostname or "" for u in re.split(r"[,=]", urls)
            if ":" in u]  # fmt: skip


def test_every_name_clients_use_is_in_the_certificates(pki: Path, rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["aggregated"]
    api_names = sans(pki / "pki" / "apiserver.crt")
    service = find(objects, "APIService", "v1alpha1.network.example.com")["spec"]["service"]
    for host in (urllib.parse.urlsplit(SERVER).hostname, f"{service['name']}.{service['namespace']}.svc"):
        assert host is not None and covered(host, api_names), f"{host} is not in the apiserver's certificate"
    etcd_names = sans(pki / "etcd-pki" / "apiserver.crt")
    apiserver = find(objects, "Deployment", "kos-apiserver")["spec"]["template"]["spec"]["containers"][0]
    storage = next(a for a in apiserver["args"] if a.startswith("--storage=")).removeprefix("--storage=etcd://")
    clients = hosts_in(storage.partition("?")[0])
    assert len(clients) == MEMBERS
    peers = []
    for arg in etcd_command(objects):
        flag, _, value = arg.partition("=")
        if flag in ("--initial-cluster", "--initial-advertise-peer-urls", "--advertise-client-urls"):
            peers += [h.replace("$(POD_NAME)", "kos-etcd-0") for h in hosts_in(value)]
    assert len(peers) >= MEMBERS
    for host in clients + peers:
        assert covered(host, etcd_names), f"{host} is not in etcd's certificate"
    assert not covered("kos-etcd-0.other.example-com.svc", etcd_names)  # the matching can say no


def free_ports(n: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def on_loopback(command: list[str], i: int, ports: list[tuple[int, int, int]], tls: Path, data: Path) -> list[str]:
    """Member i's command line with the pods' names and ports replaced by loopback ones, and the Secret's and the
    volume's mount paths by local directories."""
    out = []
    for given in command:
        arg = given.replace("$(POD_NAME)", f"kos-etcd-{i}")
        for j, (client, peer, _) in enumerate(ports):
            arg = arg.replace(f"kos-etcd-{j}.kos-etcd.example-com.svc:2379", f"127.0.0.1:{client}")
            arg = arg.replace(f"kos-etcd-{j}.kos-etcd.example-com.svc:2380", f"127.0.0.1:{peer}")
        client, peer, metrics = ports[i]
        arg = arg.replace("0.0.0.0:2379", f"127.0.0.1:{client}").replace("0.0.0.0:2380", f"127.0.0.1:{peer}")
        arg = arg.replace("0.0.0.0:9732", f"127.0.0.1:{metrics}")
        arg = arg.replace("/etc/etcd/tls/", f"{tls}/").replace("/var/lib/etcd/", f"{data}/member-{i}/")
        out.append(arg)
    return out


def healthy(metrics_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health", timeout=2) as r:
            return bool(json.loads(r.read()).get("health") == "true")
    except OSError:
        return False


@pytest.fixture
def etcd_cluster(pki: Path, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> Iterator[list[int]]:
    """The manifest's three members running on loopback; their client ports."""
    etcd = shutil.which("etcd")
    if etcd is None:
        pytest.skip("etcd is not installed (make test installs Debian's etcd-server as root)")
    tls = tmp_path / "tls"
    tls.mkdir()
    for key, path in {"tls.crt": "apiserver.crt", "tls.key": "apiserver.key", "ca.crt": "ca.crt"}.items():
        shutil.copy(pki / "etcd-pki" / path, tls / key)
    ports = [tuple(free_ports(3)) for _ in range(MEMBERS)]
    command = etcd_command(rendered["standalone"])
    assert command[0] == "etcd"
    procs = []
    try:
        for i in range(MEMBERS):
            argv = [etcd, *on_loopback(command[1:], i, ports, tls, tmp_path)]  # type: ignore[arg-type]
            with (tmp_path / f"member-{i}.log").open("wb") as log:  # the child keeps its own descriptor
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while not all(healthy(p[2]) for p in ports):
            dead = [i for i, p in enumerate(procs) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join((tmp_path / f"member-{i}.log").read_text()[-2000:] for i in range(MEMBERS))
                pytest.fail(f"etcd members {dead or 'all'} did not become healthy:\n{logs}")
            time.sleep(0.2)  # polling the members' /health until a deadline, not waiting a fixed time
        yield [p[0] for p in ports]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.mark.etcd
@pytest.mark.system
async def test_the_manifests_etcd_serves_the_apiservers_client_certificate(pki: Path, etcd_cluster: list[int]) -> None:
    endpoints = ",".join(f"127.0.0.1:{p}" for p in etcd_cluster)
    e = pki / "etcd-pki"
    store = await open_store(f"etcd://{endpoints}?cacert={e / 'ca.crt'}&cert={e / 'admin.crt'}&key={e / 'admin.key'}")
    try:
        revision = await store.create("/registry/kos/deploy-check", b"ok")
        got = await store.get("/registry/kos/deploy-check")
        assert got is not None and got.value == b"ok" and got.mod_revision == revision
    finally:
        await store.close()
    k = pki / "pki"  # the kos CA's admin: a valid certificate, of the wrong CA
    with pytest.raises(Unavailable, match="etcd"):
        wrong = await open_store(
            f"etcd://{endpoints}?cacert={e / 'ca.crt'}&cert={k / 'admin.crt'}&key={k / 'admin.key'}"
        )
        await wrong.close()
