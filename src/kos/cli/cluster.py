"""A whole kos on one machine: apiserver, controller manager and simulated nodes, each its own supervised process.

`kos up` runs one until Ctrl-C; `kos demo` runs one around a driver run. A child
that exits unexpectedly is reported and restarted (with backoff); a shutdown
stops every child (SIGTERM, then SIGKILL) and leaves nothing running.

Secure unless `insecure`: every listener is HTTPS with a certificate from the PKI
in the state directory (kos.cli.clusterpki), the apiserver authenticates client
certificates (the admin's kubeconfig, the controller manager's) and the simulated
nodes' bearer tokens, and every readiness probe verifies against the cluster CA.
With `insecure`, everything is plain HTTP with no authentication (benchmarks).

The polls, the restart backoff and the grace before SIGKILL are timers on an injected clock
(`kos.util.clock`); the one real-time bound is the HTTP timeout of a single readiness probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import sys
import urllib.request
from pathlib import Path
from typing import IO

from kos.cli import clusterpki, monitoring
from kos.client.config import ClientConfig
from kos.pki import directory
from kos.util import clusteretcd, clusterfile
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.ports import free_port

POLL_INTERVAL = 0.1
"""Seconds between readiness probes of a starting child."""
SUPERVISE_INTERVAL = 0.5
"""Seconds between checks that every child still runs."""
STOP_GRACE = 10.0
"""Seconds a child has after SIGTERM before it is killed."""
STABLE_AFTER = 60.0
"""Seconds a child must have run for its next restart to wait the shortest backoff again."""


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind `host:port` now (as the servers bind: SO_REUSEADDR, so connections of an
    earlier run still in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


@dataclasses.dataclass
class Child:
    name: str
    args: list[str]
    ready_url: str
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    log_file: IO[bytes] | None = None
    clock: Clock = REAL_CLOCK
    ready_ssl: ssl.SSLContext | None = None
    """The context `ready_url` is verified with over https (the cluster CA)."""
    role: str = ""
    """Its role in cluster.json (kos.util.clusterfile.ROLES); the name if empty."""
    url: str | None = None
    """Its client URL in cluster.json (apiservers, etcd members)."""
    metrics_url: str | None = None
    """Its /metrics in cluster.json."""
    program: tuple[str, ...] = (sys.executable, "-m", "kos")
    """What `args` follow on the command line (`kos` by default; `etcd` for an etcd member)."""
    env: dict[str, str] | None = None
    """Its environment (None: this process's)."""

    restart_at: float | None = None
    """When (clock.monotonic()) the supervisor starts it again after it exited; None while it runs."""
    started_at: float = 0.0
    """When (clock.monotonic()) it was last started."""

    async def start(self) -> None:
        self.started_at = self.clock.monotonic()
        if self.log_file is None:
            self.log_file = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - closed in stop(); instant
        self.proc = await asyncio.create_subprocess_exec(
            *self.program, *self.args, stdout=self.log_file, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True, env=self.env,
        )  # fmt: skip

    def component(self) -> clusterfile.Component:
        """This child as cluster.json lists it (pid None while it is not running)."""
        p = self.proc
        pid = p.pid if p is not None and p.returncode is None else None
        return clusterfile.Component(self.name, self.role or self.name, pid, self.url, self.metrics_url)

    async def wait_ready(self, timeout: float) -> None:
        deadline = self.clock.monotonic() + timeout
        while self.clock.monotonic() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                ok = await asyncio.to_thread(_get_ok, self.ready_url, self.ready_ssl)
            except OSError:
                ok = False
            if ok:
                return
            await self.clock.sleep(POLL_INTERVAL)
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    async def stop(self) -> None:
        p = self.proc
        if p is not None and p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            timer = self.clock.call_later(STOP_GRACE, _kill, p)
            try:
                await p.wait()
            finally:
                timer.cancel()
        f = self.log_file
        if f is not None:
            f.close()
            self.log_file = None


def _kill(p: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        p.kill()


def _get_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as r:
        return bool(r.status == 200)


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    state_dir: Path
    nodes: int = 50
    """Simulated nodes (one `kos simnodes`); 0: none (the caller adds real agents as children)."""
    storage: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    log_level: str = "warning"
    insecure: bool = False
    """Plain HTTP and no authentication anywhere (`kos up --insecure`, for benchmarks)."""
    ha: bool = False
    """`kos up --ha`: a 3-member etcd (kos.util.clusteretcd), two apiservers over it (the second on a free
    port), two controller managers, one per apiserver."""
    monitoring: bool = False
    """`kos up --monitoring`: a Prometheus scraping every process (kos.cli.monitoring), when it is installed."""


NODE_PREFIX = "node-"
HA_REPLICAS = 2
"""Apiservers and controller managers of `kos up --ha`."""


class Cluster:
    """The supervised children of one `kos up`, in start order; cluster.json (kos.util.clusterfile) lists them.

    Raises RuntimeError (from the constructor) for an address in use, a PKI that cannot be made, or `ha`
    without the `etcd` binary on PATH or with `storage` given.
    """

    def __init__(self, s: ClusterSettings, *, clock: Clock = REAL_CLOCK) -> None:
        self.s = s
        self.clock = clock
        s.state_dir.mkdir(parents=True, exist_ok=True)
        logs = s.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        if s.ha and s.storage:
            raise RuntimeError("--ha runs its own etcd: leave out --storage")
        port = s.port or free_port(s.host)
        if not port_free(s.host, port):
            raise RuntimeError(f"{s.host}:{port} is in use: choose another address with --listen")
        scheme = "http" if s.insecure else "https"
        ports = [port] + [free_port(s.host) for _ in range(HA_REPLICAS - 1 if s.ha else 0)]
        self.servers = [f"{scheme}://{_client_host(s.host)}:{p}" for p in ports]
        """Every apiserver's URL (one, or HA_REPLICAS with `ha`)."""
        self.server = self.servers[0]
        self.storage = s.storage or f"sqlite://{(s.state_dir / 'state.db').resolve()}"
        nodes_port = free_port()
        self.nodes_url = f"{scheme}://127.0.0.1:{nodes_port}"
        self.kubeconfig = s.state_dir / "kubeconfig"
        self.cluster_file = s.state_dir / clusterfile.FILE_NAME
        self.identities: clusterpki.ClusterIdentities | None = None
        """The PKI, kubeconfigs and node tokens (None with `insecure`)."""
        ready_ssl = None
        etcd_files: clusteretcd.EtcdFiles | None = None
        if not s.insecure:
            nodes = [f"{NODE_PREFIX}{i}" for i in range(s.nodes)]
            try:
                self.identities = clusterpki.prepare(s.state_dir, self.server, [s.host], nodes, servers=self.servers)
                etcd_files = clusterpki.prepare_etcd(s.state_dir) if s.ha else None
            except (directory.PKIError, OSError, ValueError) as e:
                raise RuntimeError(f"cannot make the PKI in {s.state_dir / clusterpki.PKI_DIR}: {e}") from None
            ready_ssl = ssl.create_default_context(cadata=self.identities.ca_pem.decode())
        lvl = ["--log-level", s.log_level]
        self.children: list[Child] = []
        if s.ha:
            self.storage = self._etcd_children(etcd_files, logs)
        for i, server in enumerate(self.servers):
            name = f"apiserver-{i}" if s.ha else "apiserver"
            self.children.append(Child(
                name, ["apiserver", "--storage", self.storage, "--listen", f"{s.host}:{ports[i]}",
                       *self._apiserver_flags(), *lvl], f"{server}/readyz", logs / f"{name}.log",
                role="apiserver", url=server, metrics_url=f"{server}/metrics", ready_ssl=ready_ssl,
            ))  # fmt: skip
        for i, server in enumerate(self.servers):
            name = f"controller-manager-{i}" if s.ha else "controller-manager"
            cm = f"{scheme}://127.0.0.1:{free_port()}"
            self.children.append(Child(
                name, ["controller-manager", *self._client_flags("controller-manager", _first(server, self.servers)),
                       "--leader-elect-identity", name,  # a restarted child takes its own Lease back at once
                       "--metrics-listen", cm.rpartition("/")[2], *self._serving_flags(clusterpki.CM_SERVING), *lvl],
                f"{cm}/healthz", logs / f"{name}.log", role="controller-manager", metrics_url=f"{cm}/metrics",
                ready_ssl=ready_ssl,
            ))  # fmt: skip
        if s.nodes:  # none: the nodes are real agents the caller adds (kos demo --fabric ovs)
            self.children.append(Child(
                "simnodes", ["simnodes", *self._client_flags("simnodes", ",".join(self.servers)), "--count",
                             str(s.nodes), "--name-prefix", NODE_PREFIX, "--listen", f"127.0.0.1:{nodes_port}",
                             *self._serving_flags(clusterpki.SIMNODES_SERVING), *lvl],
                f"{self.nodes_url}/readyz", logs / "simnodes.log", role="simnodes",
                metrics_url=f"{self.nodes_url}/metrics", ready_ssl=ready_ssl,
            ))  # fmt: skip
        self.prometheus: str | None = None
        """The URL of `monitoring`'s Prometheus (its UI and HTTP API); None without one."""
        self._monitoring: monitoring.Files | None = None
        if s.monitoring:
            self._prometheus_child(etcd_files, ready_ssl, logs)
        self._ready_ssl = ready_ssl
        for child in self.children:
            child.clock = clock
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    def _etcd_children(self, tls: clusteretcd.EtcdFiles | None, logs: Path) -> str:
        """Add the etcd members to the children; the apiservers' storage URL for them."""
        etcd = shutil.which("etcd")
        if etcd is None:
            raise RuntimeError("kos up --ha needs the etcd binary on PATH (Debian: apt-get install etcd-server)")
        try:
            members, token = clusteretcd.members(self.s.state_dir)
        except (OSError, ValueError, KeyError) as e:
            raise RuntimeError(f"cannot read or write {self.s.state_dir / clusteretcd.ETCD_DIR}: {e}") from None
        for m in members:
            for p in (m.client_port, m.peer_port):
                if not port_free("127.0.0.1", p):
                    raise RuntimeError(f"127.0.0.1:{p} of etcd member {m.name} (kept in "
                                       f"{self.s.state_dir / clusteretcd.ETCD_DIR}) is in use")  # fmt: skip
        ctx = None  # etcd's health is probed with etcd's CA and the apiservers' client certificate
        if tls is not None:
            ctx = ssl.create_default_context(cafile=str(tls.ca))
            ctx.load_cert_chain(tls.client_cert, tls.client_key)
        # etcd reads ETCD_<FLAG> variables too, and refuses to start when one repeats a flag given
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        for m in members:
            url = m.client_url(tls is not None)
            self.children.append(Child(
                m.name, clusteretcd.args(m, members, token, tls), f"{url}/health", logs / f"{m.name}.log",
                role="etcd", url=url, metrics_url=f"{url}/metrics", ready_ssl=ctx, program=(etcd,), env=env,
            ))  # fmt: skip
        return clusteretcd.storage_url(members, tls)

    def _prometheus_child(
        self, etcd: clusteretcd.EtcdFiles | None, ready_ssl: ssl.SSLContext | None, logs: Path
    ) -> None:
        """Add Prometheus (the last child: its configuration is written from cluster.json once every other child
        is up), if its binary is installed."""
        prometheus = monitoring.binary()
        if prometheus is None:
            return
        etcd_tls = (etcd.ca, etcd.client_cert, etcd.client_key) if etcd is not None else None
        try:
            files = monitoring.prepare(self.s.state_dir, secure=not self.s.insecure, etcd=etcd_tls)
        except (directory.PKIError, OSError) as e:
            raise RuntimeError(f"cannot prepare Prometheus' files in {self.s.state_dir}: {e}") from None
        url = f"{'http' if self.s.insecure else 'https'}://127.0.0.1:{free_port()}"
        self._monitoring = files
        self.prometheus = url
        self.children.append(Child(
            "prometheus", monitoring.args(files, url.rpartition("/")[2]), f"{url}/-/ready", logs / "prometheus.log",
            role="prometheus", url=url, metrics_url=f"{url}/metrics", ready_ssl=ready_ssl, program=(prometheus,),
        ))  # fmt: skip

    def _apiserver_flags(self) -> list[str]:
        ids = self.identities
        if ids is None:
            return ["--insecure"]
        crt, key = ids.cert(directory.APISERVER)
        return ["--tls-cert-file", str(crt), "--tls-private-key-file", str(key), "--client-ca-file", str(ids.ca_file),
                "--token-auth-file", str(ids.node_tokens)]  # fmt: skip

    def _serving_flags(self, name: str) -> list[str]:
        if self.identities is None:
            return ["--insecure"]
        crt, key = self.identities.cert(name)
        return ["--tls-cert-file", str(crt), "--tls-private-key-file", str(key)]

    def _client_flags(self, who: str, server: str) -> list[str]:
        """`server`: one URL, or several comma-separated (clients fail over in that order)."""
        ids = self.identities
        if ids is None:
            return ["--server", server]
        if who == "controller-manager":
            return ["--kubeconfig", str(ids.controller_manager_kubeconfig), "--server", server]
        return ["--kubeconfig", str(ids.simnodes_kubeconfig), "--server", server, "--node-tokens", str(ids.node_tokens)]

    def client_args(self) -> list[str]:
        """The flags a kos client command (driver, verify) reaches this cluster with, as the admin."""
        return ["--server", self.server] if self.identities is None else ["--kubeconfig", str(self.kubeconfig)]

    def client_config(self) -> ClientConfig:
        """How a client in this process reaches the apiserver: as the admin (the kubeconfig), or plain."""
        if self.identities is None:
            return ClientConfig.for_server(self.server)
        return ClientConfig.from_kubeconfig(self.kubeconfig)

    @property
    def nodes_ssl(self) -> ssl.SSLContext | None:
        """The context the nodes endpoint is verified with (the cluster CA), None when plain."""
        return self._ready_ssl

    def verify_args(self) -> list[str]:
        """`client_args` and the nodes endpoint for `kos verify` and `kos trace`."""
        out = [*self.client_args(), "--nodes-endpoint", self.nodes_url]
        if self.identities is not None:
            out += ["--nodes-ca-file", str(self.identities.ca_file)]
        return out

    def write_kubeconfig(self) -> None:
        """With `insecure`: a kubeconfig naming the server and no user (a secure cluster's is the admin's,
        written with the PKI)."""
        if self.identities is not None:
            return
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: kos\n  cluster:\n    server: {self.server}\n"
            "users:\n- name: kos\n  user: {}\n"
            "contexts:\n- name: kos\n  context:\n    cluster: kos\n    user: kos\n    namespace: default\n"
            "current-context: kos\n"
        )

    def write_cluster_file(self) -> None:
        """Replace cluster.json with every child's current pid (kos.util.clusterfile)."""
        clusterfile.write(self.cluster_file, [c.component() for c in self.children], self.kubeconfig)

    async def start(self) -> None:
        """Start the children in order, each ready before the next (the etcd members all at once: one alone
        has no quorum), then supervise them. Raises RuntimeError if one exits or is not ready in time."""
        self.write_kubeconfig()
        etcd = [c for c in self.children if c.role == "etcd"]
        for child in etcd:
            await child.start()
        self.write_cluster_file()
        for child in etcd:
            await child.wait_ready(60)
        for child in self.children:
            if child.role == "etcd":
                continue
            if child.role == "prometheus" and self._monitoring is not None:
                monitoring.write_config(self._monitoring, self.cluster_file)
            await child.start()
            self.write_cluster_file()
            await child.wait_ready(120 if child.role == "simnodes" else 60)
        self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        """Restart each child that exits, after its own backoff (0.5 s doubling to 30 s, back to the start once
        it ran STABLE_AFTER; as the kubelet's crash-loop backoff), so one child's backoff never delays another's
        restart; cluster.json follows (pid null while a child waits)."""
        while not self._stopping:
            await self.clock.sleep(SUPERVISE_INTERVAL)
            now = self.clock.monotonic()
            for child in self.children:
                p = child.proc
                if p is None or p.returncode is None or self._stopping:
                    continue
                if child.restart_at is None:
                    if now - child.started_at > STABLE_AFTER:
                        child.restarts = 0
                    child.restarts += 1
                    delay = min(30.0, 0.5 * 2 ** min(child.restarts, 6))
                    child.restart_at = now + delay
                    print(f"kos: {child.name} exited with {p.returncode} (restart #{child.restarts} in {delay:.1f}s); "
                          f"its log: {child.log_path}\n{child.tail(5)}", file=sys.stderr, flush=True)  # fmt: skip
                    self.write_cluster_file()
                elif now >= child.restart_at:
                    child.restart_at = None
                    await child.start()
                    self.write_cluster_file()

    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        """Stop every child, the clients first and the etcd members last (together, so none waits for a
        leader transfer to peers already gone), and remove cluster.json."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        for child in reversed(self.children):
            if child.role != "etcd":
                await child.stop()
        await asyncio.gather(*(c.stop() for c in self.children if c.role == "etcd"))
        clusterfile.remove(self.cluster_file)


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a listener on `host`: 127.0.0.1 for a wildcard address."""
    try:
        return "127.0.0.1" if ipaddress.ip_address(host.strip("[]")).is_unspecified else host
    except ValueError:
        return host


def _first(server: str, servers: list[str]) -> str:
    """`servers` as a `--server` list with `server` first: a client prefers its own apiserver and fails over to
    the others."""
    return ",".join([server, *(x for x in servers if x != server)])
