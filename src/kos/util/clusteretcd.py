"""The local etcd cluster of `kos up --ha`: three members on loopback, their flags, and the storage URL.

Each member is the `etcd` binary (etcd 3.4+) with its data in `<state-dir>/etcd/<name>.data`, serving its
client port over mutual TLS (`--cert-file --key-file --trusted-ca-file --client-cert-auth`, with the files
kos.cli.clusterpki.prepare_etcd makes and `etcd_files` names) and talking to its peers in clear on
127.0.0.1 (loopback only). The ports are chosen once and kept in `<state-dir>/etcd/members.json`, because
etcd records its peers' URLs in its data directory: a second `kos up --ha` on the same state directory
reuses them, and with them the data.
The same flags serve a first start and a restart: etcd ignores `--initial-cluster*` once its data
directory holds a member (etcd's "Clustering" guide).

It lives in kos.util, below every layer, because more than `kos up` needs it: `kos chaos` (kos.chaos)
reaches the members of a running cluster with the same client certificate and storage URL.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import urllib.parse
from pathlib import Path

from kos.util.ports import free_ports

ETCD_DIR = "etcd"
MEMBERS_FILE = "members.json"
MEMBERS = 3
PKI_DIR = "pki"
ETCD_SERVER, ETCD_CLIENT = "server", "apiserver-etcd-client"
"""The names (`NAME.crt`, `NAME.key`) of the members' serving certificate and the apiservers' client
certificate in `<state-dir>/pki/etcd`; the CA is `ca`."""


@dataclasses.dataclass(frozen=True, slots=True)
class EtcdFiles:
    """The PEM files of `kos up --ha`'s etcd, all in `<state-dir>/pki/etcd` (kos.cli.clusterpki)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def etcd_pki(state_dir: Path) -> Path:
    """`<state-dir>/pki/etcd`: etcd's own CA and certificates."""
    return state_dir / PKI_DIR / ETCD_DIR


def etcd_files(state_dir: Path) -> EtcdFiles:
    """Where the etcd files of `state_dir` are (whether or not they exist yet)."""
    d = etcd_pki(state_dir)
    return EtcdFiles(d / "ca.crt", d / f"{ETCD_SERVER}.crt", d / f"{ETCD_SERVER}.key", d / f"{ETCD_CLIENT}.crt",
                     d / f"{ETCD_CLIENT}.key")  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class EtcdMember:
    """One member: its name, client and peer ports on 127.0.0.1, and its data directory."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path

    def client_url(self, tls: bool) -> str:
        return f"{'https' if tls else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


def members(state_dir: Path, count: int = MEMBERS) -> tuple[list[EtcdMember], str]:
    """The members of the etcd in `state_dir` and its cluster token: those of members.json if it lists
    `count`, else new ones on free ports (written there). Raises OSError if it cannot be written, ValueError
    if it cannot be read."""
    root = state_dir / ETCD_DIR
    root.mkdir(parents=True, exist_ok=True)
    path = root / MEMBERS_FILE
    if path.exists():
        doc = json.loads(path.read_text())
        if len(doc["members"]) == count:
            ms = [EtcdMember(m["name"], int(m["client_port"]), int(m["peer_port"]), root / f"{m['name']}.data")
                  for m in doc["members"]]  # fmt: skip
            return ms, str(doc["token"])
    ports = free_ports(2 * count)
    ms = [EtcdMember(f"etcd-{i}", ports[2 * i], ports[2 * i + 1], root / f"etcd-{i}.data") for i in range(count)]
    token = f"kos-{secrets.token_hex(8)}"
    doc = {"token": token, "members": [{"name": m.name, "client_port": m.client_port, "peer_port": m.peer_port}
                                       for m in ms]}  # fmt: skip
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return ms, token


def args(m: EtcdMember, all_members: list[EtcdMember], token: str, tls: EtcdFiles | None) -> list[str]:
    """The `etcd` command line (without the program) of member `m`."""
    initial = ",".join(f"{x.name}={x.peer_url}" for x in all_members)
    url = m.client_url(tls is not None)
    out = ["--name", m.name, "--data-dir", str(m.data_dir),
           "--listen-client-urls", url, "--advertise-client-urls", url,
           "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
           "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", token,
           "--log-level", "warn", "--logger", "zap"]  # fmt: skip
    if tls is not None:
        out += ["--cert-file", str(tls.server_cert), "--key-file", str(tls.server_key),
                "--trusted-ca-file", str(tls.ca), "--client-cert-auth"]  # fmt: skip
    return out


def storage_url(all_members: list[EtcdMember], tls: EtcdFiles | None) -> str:
    """The apiservers' `--storage`: `etcd://127.0.0.1:P1,...` with `?cacert=…&cert=…&key=…` under TLS
    (docs/operations.md, "Storage")."""
    return storage_url_of([f"127.0.0.1:{m.client_port}" for m in all_members], tls)


def storage_url_of(endpoints: list[str], tls: EtcdFiles | None) -> str:
    """`storage_url` for members at `endpoints` (`host:port` each): from cluster.json's etcd URLs."""
    url = "etcd://" + ",".join(endpoints)
    if tls is None:
        return url
    query = {"cacert": tls.ca.resolve(), "cert": tls.client_cert.resolve(), "key": tls.client_key.resolve()}
    return f"{url}?{urllib.parse.urlencode(query, safe='/')}"
