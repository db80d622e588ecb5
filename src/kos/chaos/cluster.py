"""The running cluster a chaos run works on: found through `<state-dir>/cluster.json`, asked who leads.

A fault needs to know which process to hit now — the etcd leader, the active controller manager, an
apiserver — and whether the process it killed runs again. `kos up` restarts a killed child under a new pid
and rewrites cluster.json (kos.util.clusterfile), so every question here reads the file again rather than
trusting what it said before.

Who leads is asked of the cluster itself, as an operator would:

* the etcd leader: each member's `Maintenance.Status` over gRPC (aetcd's stubs, as kos.storage.etcd) with the
  apiservers' etcd client certificate; the member whose `header.member_id` is the `leader` it reports is the
  leader (etcdctl's `endpoint status` does the same). Not over etcd's JSON gateway
  (`POST /v3/maintenance/status`): with `kos up --ha`'s `--client-cert-auth`, etcd 3.4.23's gateway answered
  every such call 503 `connection closed` (its own connection to the gRPC port failed);
* the active controller manager: the holder of the Lease `kube-system/kos-controller-manager`
  (kos.controllers.leaderelection); `kos up --ha` gives each controller manager its cluster.json name as
  `--leader-elect-identity`, so the holder is a component's name;
* an apiserver's readiness: its `/readyz`, verified against the cluster CA with the admin's certificate.

A /readyz probe is a blocking `urllib` call in a thread; every probe has a short timeout, because a stopped (SIGSTOP) peer accepts
the connection and never answers: a probe must give up, not hang the run.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
from aetcd import rpc

from kos.api.errors import StatusError
from kos.api.types import LEADER_ELECTION_NAMESPACE, Lease
from kos.client.rest import Client
from kos.controllers.leaderelection import DEFAULT_NAME
from kos.pki.kubeconfig import load_kubeconfig
from kos.pki.tokenfile import TokenFileError, read_token_file
from kos.storage.etcd_tls import EtcdTLS, EtcdTLSError
from kos.util import clusteretcd, clusterfile
from kos.util.clusterfile import Component

__all__ = ["PROBE_TIMEOUT", "ClusterError", "RunningCluster", "alive"]

NODE_TOKENS = "node-tokens.csv"
NODE_USER_PREFIX = "system:node:"
PROBE_TIMEOUT = 1.0
"""Seconds one probe (an etcd status, a /readyz) waits for its answer."""


class ClusterError(Exception):
    """The cluster cannot be found or is not what a chaos run needs (no cluster.json, not `kos up --ha`)."""


def alive(pid: int | None) -> bool:
    """Whether process `pid` exists and is not a zombie (Linux /proc)."""
    if pid is None:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


class RunningCluster:
    """A `kos up` running on `state_dir`. Raises ClusterError if its cluster.json cannot be read."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / clusterfile.FILE_NAME
        self.file = self.reload()
        self.kubeconfig = self.file.kubeconfig
        try:
            kc = load_kubeconfig(self.kubeconfig)
        except Exception as e:
            raise ClusterError(f"cannot read the admin kubeconfig {self.kubeconfig}: {e}") from None
        self._kos_ssl = kc.ssl_context()
        files = clusteretcd.etcd_files(state_dir)
        self.etcd_files = files if files.ca.exists() else None
        """The etcd CA and client certificate (None: etcd in clear, or no etcd)."""
        self._etcd_credentials: grpc.ChannelCredentials | None = None
        if self.etcd_files is not None:
            f = self.etcd_files
            try:
                self._etcd_credentials = EtcdTLS(f.ca, f.client_cert, f.client_key).load()
            except EtcdTLSError as e:
                raise ClusterError(str(e)) from None

    def reload(self) -> clusterfile.ClusterFile:
        """Read cluster.json again (pids change when `kos up` restarts a child). Raises ClusterError."""
        try:
            self.file = clusterfile.read(self.path)
        except FileNotFoundError:
            raise ClusterError(f"no {self.path}: is `kos up --ha --state-dir {self.state_dir}` running?") from None
        except (OSError, ValueError) as e:
            raise ClusterError(f"cannot read {self.path}: {e}") from None
        return self.file

    def role(self, role: str) -> list[Component]:
        """The components of `role` as cluster.json lists them now (re-read)."""
        return self.reload().by_role(role)

    def component(self, name: str) -> Component:
        """Component `name` as cluster.json lists it now. Raises ClusterError if it is not there."""
        for c in self.reload().components:
            if c.name == name:
                return c
        raise ClusterError(f"{self.path} lists no component {name!r}")

    def check_ha(self) -> None:
        """Raises ClusterError unless this is a `kos up --ha` cluster (3 etcd members, 2+ apiservers)."""
        counts = {r: len(self.file.by_role(r)) for r in ("etcd", "apiserver", "controller-manager", "simnodes")}
        if counts["etcd"] < 3 or counts["apiserver"] < 2 or counts["controller-manager"] < 1 or not counts["simnodes"]:
            raise ClusterError(f"kos chaos needs a `kos up --ha` cluster; {self.path} lists {counts}")

    @property
    def servers(self) -> list[str]:
        """Every apiserver's URL."""
        return [c.url for c in self.file.by_role("apiserver") if c.url]

    @property
    def storage_url(self) -> str:
        """The etcd storage URL the apiservers use (`etcd://h:p,...?cacert=…&cert=…&key=…`)."""
        hosts = [urllib.parse.urlsplit(c.url).netloc for c in self.file.by_role("etcd") if c.url]
        return clusteretcd.storage_url_of(hosts, self.etcd_files)

    @property
    def nodes_endpoint(self) -> str:
        """The simulated nodes' endpoint (`kos verify --nodes-endpoint`), "" if there is none."""
        for c in self.file.by_role("simnodes"):
            if c.metrics_url:
                return c.metrics_url.removesuffix("/metrics")
        return ""

    @property
    def ca_file(self) -> Path:
        """The cluster CA (the apiservers' and the nodes endpoint's certificates chain to it)."""
        return self.state_dir / "pki" / "ca.crt"

    def nodes(self) -> list[str]:
        """The simulated nodes' names, from `<state-dir>/node-tokens.csv` (one `system:node:<n>` token each;
        kos.cli.clusterpki). Raises ClusterError if there are none."""
        path = self.state_dir / NODE_TOKENS
        try:
            records = read_token_file(path)
        except TokenFileError as e:
            raise ClusterError(str(e)) from None
        names = sorted(r.uid for r in records if r.user == NODE_USER_PREFIX + r.uid and ":" not in r.uid)
        if not names:
            raise ClusterError(f"{path} names no node")
        return names

    def client(self, **kwargs: object) -> Client:
        """A client as the admin, failing over across every apiserver (the kubeconfig lists them)."""
        return Client.from_kubeconfig(self.kubeconfig, **kwargs)  # type: ignore[arg-type]

    # --- who leads, who is ready -------------------------------------------------------------

    async def etcd_status(self, member: Component) -> tuple[int, int] | None:
        """`member`'s (member id, leader id) from its Maintenance.Status, None if it does not answer within
        PROBE_TIMEOUT (killed, stopped, restarting). Leader 0: it knows of no leader."""
        if not member.url or not alive(member.pid):
            return None
        target = urllib.parse.urlsplit(member.url).netloc
        if self._etcd_credentials is None:
            channel = rpc.insecure_channel(target)
        else:
            channel = rpc.secure_channel(target, self._etcd_credentials)
        try:
            got = await rpc.MaintenanceStub(channel).Status(rpc.StatusRequest(), timeout=PROBE_TIMEOUT)
        except (rpc.AioRpcError, OSError):
            return None
        finally:
            await channel.close()
        return int(got.header.member_id), int(got.leader)

    async def etcd_leader(self) -> Component | None:
        """The etcd member that is leader now (the one whose own member id is the leader it reports), None
        while there is none (an election, a lost quorum)."""
        members = self.role("etcd")
        answers = await asyncio.gather(*(self.etcd_status(m) for m in members))
        for m, got in zip(members, answers, strict=True):
            if got is not None and got[1] != 0 and got[0] == got[1]:
                return m
        return None

    async def active_controller_manager(self, client: Client) -> str | None:
        """The holder of the controller managers' Lease (a component name with `kos up --ha`), None if it is
        not held or cannot be read now."""
        try:
            lease = await client.get(Lease, LEADER_ELECTION_NAMESPACE, DEFAULT_NAME)
        except StatusError:
            return None
        return lease.spec.holder_identity or None

    async def apiserver_ready(self, url: str) -> bool:
        """Whether the apiserver at `url` answers `/readyz` with 200 within PROBE_TIMEOUT."""
        try:
            await asyncio.to_thread(_get, url + "/readyz", self._kos_ssl)
        except (OSError, ValueError):
            return False
        return True

    async def all_apiservers_ready(self) -> bool:
        return all(await asyncio.gather(*(self.apiserver_ready(u) for u in self.servers)))

    async def etcd_healthy(self) -> bool:
        """Whether every member answers its status and they agree on one leader."""
        answers = await asyncio.gather(*(self.etcd_status(m) for m in self.role("etcd")))
        leaders = {a[1] for a in answers if a is not None}
        return all(a is not None for a in answers) and len(leaders) == 1 and leaders != {0}

    def running_again(self, name: str, old_pid: int | None) -> bool:
        """Whether component `name` runs under a pid other than `old_pid` (restarted by `kos up`)."""
        c = self.component(name)
        return c.pid is not None and c.pid != old_pid and alive(c.pid)

    def signal(self, name: str, sig: int) -> int:
        """Send `sig` to component `name`'s current process; its pid. Raises ClusterError if it has none now
        (being restarted), ProcessLookupError if it just exited."""
        c = self.component(name)
        if c.pid is None or not alive(c.pid):
            raise ClusterError(f"{name} is not running now")
        os.kill(c.pid, sig)
        return c.pid


def _get(url: str, context: ssl.SSLContext | None) -> bytes:
    with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT, context=context) as r:
        data: bytes = r.read()
        return data
