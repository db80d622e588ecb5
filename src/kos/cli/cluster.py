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
import signal
import socket
import ssl
import sys
import urllib.request
from pathlib import Path

from kos.cli import clusterpki
from kos.client.config import ClientConfig
from kos.pki import directory
from kos.util.clock import REAL_CLOCK, Clock

POLL_INTERVAL = 0.1
"""Seconds between readiness probes of a starting child."""
SUPERVISE_INTERVAL = 0.5
"""Seconds between checks that every child still runs."""
STOP_GRACE = 10.0
"""Seconds a child has after SIGTERM before it is killed."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


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
    log_file: object = None
    clock: Clock = REAL_CLOCK
    ready_ssl: ssl.SSLContext | None = None
    """The context `ready_url` is verified with over https (the cluster CA)."""

    async def start(self) -> None:
        f = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - closed in stop(); opening a log is instant
        self.log_file = f
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kos", *self.args, stdout=f, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

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
            f.close()  # type: ignore[attr-defined]
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
    storage: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    log_level: str = "warning"
    insecure: bool = False
    """Plain HTTP and no authentication anywhere (`kos up --insecure`, for benchmarks)."""


NODE_PREFIX = "node-"


class Cluster:
    def __init__(self, s: ClusterSettings, *, clock: Clock = REAL_CLOCK) -> None:
        self.s = s
        self.clock = clock
        s.state_dir.mkdir(parents=True, exist_ok=True)
        logs = s.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        port = s.port or free_port(s.host)
        if not port_free(s.host, port):
            raise RuntimeError(f"{s.host}:{port} is in use: choose another address with --listen")
        scheme = "http" if s.insecure else "https"
        self.server = f"{scheme}://{_client_host(s.host)}:{port}"
        self.storage = s.storage or f"sqlite://{(s.state_dir / 'state.db').resolve()}"
        cm_port, nodes_port = free_port(), free_port()
        self.nodes_url = f"{scheme}://127.0.0.1:{nodes_port}"
        self.kubeconfig = s.state_dir / "kubeconfig"
        self.identities: clusterpki.ClusterIdentities | None = None
        """The PKI, kubeconfigs and node tokens (None with `insecure`)."""
        ready_ssl = None
        if not s.insecure:
            nodes = [f"{NODE_PREFIX}{i}" for i in range(s.nodes)]
            try:
                self.identities = clusterpki.prepare(s.state_dir, self.server, [s.host], nodes)
            except (directory.PKIError, OSError, ValueError) as e:
                raise RuntimeError(f"cannot make the PKI in {s.state_dir / clusterpki.PKI_DIR}: {e}") from None
            ready_ssl = ssl.create_default_context(cadata=self.identities.ca_pem.decode())
        lvl = ["--log-level", s.log_level]
        self.children = [
            Child("apiserver", ["apiserver", "--storage", self.storage, "--listen", f"{s.host}:{port}",
                                *self._apiserver_flags(), *lvl], f"{self.server}/readyz", logs / "apiserver.log"),
            Child("controller-manager", ["controller-manager", *self._client_flags("controller-manager"),
                                         "--metrics-listen", f"127.0.0.1:{cm_port}",
                                         *self._serving_flags(clusterpki.CM_SERVING), *lvl],
                  f"{scheme}://127.0.0.1:{cm_port}/healthz", logs / "controller-manager.log"),
            Child("simnodes", ["simnodes", *self._client_flags("simnodes"), "--count", str(s.nodes),
                               "--name-prefix", NODE_PREFIX, "--listen", f"127.0.0.1:{nodes_port}",
                               *self._serving_flags(clusterpki.SIMNODES_SERVING), *lvl],
                  f"{self.nodes_url}/readyz", logs / "simnodes.log"),
        ]  # fmt: skip
        self._ready_ssl = ready_ssl
        for child in self.children:
            child.clock = clock
            child.ready_ssl = ready_ssl
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

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

    def _client_flags(self, who: str) -> list[str]:
        ids = self.identities
        if ids is None:
            return ["--server", self.server]
        if who == "controller-manager":
            return ["--kubeconfig", str(ids.controller_manager_kubeconfig)]
        return ["--kubeconfig", str(ids.simnodes_kubeconfig), "--node-tokens", str(ids.node_tokens)]

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

    async def start(self) -> None:
        for child in self.children:
            await child.start()
            await child.wait_ready(120 if child.name == "simnodes" else 60)
        self.write_kubeconfig()
        self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self._stopping:
            await self.clock.sleep(SUPERVISE_INTERVAL)
            for child in self.children:
                p = child.proc
                if p is None or p.returncode is None or self._stopping:
                    continue
                child.restarts += 1
                delay = min(30.0, 0.5 * 2 ** min(child.restarts, 6))
                print(f"kos: {child.name} exited with {p.returncode} (restart #{child.restarts} in {delay:.1f}s); "
                      f"its log: {child.log_path}\n{child.tail(5)}", file=sys.stderr, flush=True)  # fmt: skip
                await self.clock.sleep(delay)
                if not self.stopping():
                    await child.start()

    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        for child in reversed(self.children):
            await child.stop()


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a listener on `host`: 127.0.0.1 for a wildcard address."""
    try:
        return "127.0.0.1" if ipaddress.ip_address(host.strip("[]")).is_unspecified else host
    except ValueError:
        return host
