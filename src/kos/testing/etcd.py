"""Start a real etcd for tests and benchmarks: one member, or a loopback cluster with kill and restart.

`EtcdProcess.start(workdir)` runs the `etcd` binary from PATH as a single member on free
loopback ports, with its data directory under `workdir`, and returns once `/health`
reports true. `EtcdProcess.cluster(workdir, members=3)` does the same for a 3-member
cluster; `kill(i)` (SIGKILL) and `restart(i)` (same data dir and flags) drive failover
tests, and `leader()` says which member leads. `stop()` ends every member (SIGTERM,
then SIGKILL) and removes the data directories; members still running when the
interpreter exits are killed, so a crashed test run leaves no etcd behind.

With `tls=True` (`EtcdProcess.start(workdir, tls=True)`, or `cluster(..., tls=True)`) every member serves
its client port over mutual TLS, as a production etcd does: `--cert-file/--key-file` (a serving certificate
for 127.0.0.1 and localhost), `--trusted-ca-file` and `--client-cert-auth`, with https:// client URLs (peers
still talk in clear on loopback). The test PKI is minted by kos.pki into `workdir/pki-<tag>/`: `ca.crt`, the
members' `server.crt/.key`, and `client.crt/.key` (CN `kos-apiserver`) — see `EtcdProcess.tls`; `url` then
carries them as `?cacert=…&cert=…&key=…`. With `peer=True` as well, the serving certificate is also a client
certificate (serverAuth+clientAuth, as `kos certs init --peer` makes it): etcd's JSON gateway dials the member's
own client port with it, which a server-auth-only certificate fails (bench/etcd_binding.py's `kos-http` column).

Free ports come from binding port 0 and releasing it, which can race with other
processes; a member that fails with "address already in use" is retried on new ports.
Logs stay in `workdir/<name>.log` and their tail is quoted in every startup error.

This module is imported by tests and benchmarks, never by production code.
"""

from __future__ import annotations

import atexit
import dataclasses
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
import weakref

from kos.pki import authority, directory
from kos.storage.etcd_tls import EtcdTLS
from kos.util.ports import free_ports

_START_TIMEOUT = 15.0
_PORT_RETRIES = 3


class EtcdStartError(RuntimeError):
    """etcd did not come up; the message carries the tail of its log."""


@dataclasses.dataclass
class _Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: pathlib.Path
    log_path: pathlib.Path
    scheme: str = "http"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


_live: weakref.WeakSet[EtcdProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for p in list(_live):
        p.stop()


def _log_tail(path: pathlib.Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """The test PKI of a TLS etcd (PEM files): what a client needs, and what the members serve."""

    cacert: pathlib.Path
    """The CA that signed the members' serving certificate and the client certificate."""
    cert: pathlib.Path
    """A client certificate etcd accepts (CN `kos-apiserver`)."""
    key: pathlib.Path
    server_cert: pathlib.Path
    """The members' serving certificate: SANs 127.0.0.1 and localhost."""
    server_key: pathlib.Path

    @classmethod
    def mint(cls, pki: pathlib.Path, *, peer: bool = False) -> TLSFiles:
        """A fresh CA, serving certificate (also a client one with `peer`) and client certificate, written into `pki`."""
        ca = authority.new_ca("etcd-test-ca")
        server = authority.issue_server(ca, "etcd", ["localhost"], [ipaddress.ip_address("127.0.0.1")], peer=peer)
        pki.mkdir(parents=True, exist_ok=True)
        for name, identity in (("ca", ca), ("server", server), ("client", authority.issue_client(ca, "kos-apiserver"))):
            directory.write(pki, name, identity, force=True)
        return cls(pki / "ca.crt", pki / "client.crt", pki / "client.key", pki / "server.crt", pki / "server.key")

    @property
    def query(self) -> str:
        """The storage URL's query for these files: `cacert=…&cert=…&key=…`."""
        return urllib.parse.urlencode({"cacert": self.cacert, "cert": self.cert, "key": self.key}, safe="/")

    def client_context(self) -> ssl.SSLContext:
        """An ssl context that trusts the CA and presents the client certificate (for etcd's HTTP endpoints)."""
        ctx = ssl.create_default_context(cafile=str(self.cacert))
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def _http_json(
    url: str, body: bytes | None = None, timeout: float = 1.0, context: ssl.SSLContext | None = None
) -> dict[str, object]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        data = json.loads(resp.read())
    return data if isinstance(data, dict) else {}


def _healthy(m: _Member, context: ssl.SSLContext | None) -> bool:
    try:
        return _http_json(m.client_url + "/health", timeout=0.5, context=context).get("health") == "true"
    except (OSError, ValueError):
        return False


class EtcdProcess:
    """One or more local etcd members; `endpoints` lists every member's client (host, port)."""

    def __init__(
        self, workdir: pathlib.Path, members: list[_Member], cluster_token: str, tls: TLSFiles | None = None
    ) -> None:
        self.workdir = workdir
        self._members = members
        self._token = cluster_token
        self.tls = tls
        """The test PKI when the members serve mutual TLS, else None."""
        self._context = tls.client_context() if tls is not None else None
        self.endpoints: list[tuple[str, int]] = [("127.0.0.1", m.client_port) for m in members]
        _live.add(self)

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def start(cls, workdir: pathlib.Path, *, tls: bool = False, peer: bool = False) -> EtcdProcess:
        """A single member on free loopback ports, healthy on return; serving mutual TLS if `tls` (with a
        serverAuth+clientAuth serving certificate if `peer` too)."""
        return cls.cluster(workdir, members=1, tls=tls, peer=peer)

    @classmethod
    def cluster(cls, workdir: pathlib.Path, members: int = 3, *, tls: bool = False, peer: bool = False) -> EtcdProcess:
        """A `members`-member loopback cluster, every member healthy on return; serving mutual TLS if `tls`
        (with a serverAuth+clientAuth serving certificate if `peer` too)."""
        if shutil.which("etcd") is None:
            raise EtcdStartError("etcd is not on PATH (Debian: apt-get install etcd-server)")
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        files = TLSFiles.mint(workdir / f"pki-{os.getpid()}-{time.monotonic_ns()}", peer=peer) if tls else None
        last: EtcdStartError | None = None
        for attempt in range(_PORT_RETRIES):
            ports = free_ports(2 * members)
            tag = f"{os.getpid()}-{attempt}-{ports[0]}"
            ms = [
                _Member(
                    name=f"m{i}",
                    client_port=ports[2 * i],
                    peer_port=ports[2 * i + 1],
                    data_dir=workdir / f"etcd-m{i}-{tag}.data",
                    log_path=workdir / f"etcd-m{i}-{tag}.log",
                    scheme="https" if tls else "http",
                )
                for i in range(members)
            ]
            proc = cls(workdir, ms, cluster_token=f"kos-{tag}", tls=files)
            try:
                for i in range(members):
                    proc._spawn(i, new=True)
                proc._wait_healthy(range(members), _START_TIMEOUT)
                return proc
            except EtcdStartError as e:
                proc.stop()
                last = e
                if "address already in use" not in str(e):
                    raise
        assert last is not None
        raise last

    def _spawn(self, i: int, *, new: bool) -> None:
        m = self._members[i]
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self._members)
        args = [
            "etcd",
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-state", "new" if new else "existing",
            "--initial-cluster-token", self._token,
            "--log-level", "warn",
            "--logger", "zap",
        ]  # fmt: skip
        if self.tls is not None:
            args += [
                "--cert-file", str(self.tls.server_cert),
                "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.cacert),
                "--client-cert-auth",
            ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        # A child inherits its parent thread's signal mask, and event-loop worker threads
        # (uvloop's `to_thread`) block every signal: etcd would then ignore SIGTERM.
        blocked = signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            with open(m.log_path, "ab") as log:
                m.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _wait_healthy(self, which: range | list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(which)
        while pending:
            for i in list(pending):
                m = self._members[i]
                if m.proc is None or m.proc.poll() is not None:
                    code = None if m.proc is None else m.proc.returncode
                    raise EtcdStartError(
                        f"etcd member {m.name} exited with status {code} while starting "
                        f"(client {m.client_url}); log {m.log_path}:\n{_log_tail(m.log_path)}"
                    )
                if _healthy(m, self._context):
                    pending.remove(i)
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(self._members[i].name for i in pending)
                tails = "\n".join(
                    f"--- {self._members[i].log_path}:\n{_log_tail(self._members[i].log_path)}" for i in pending
                )
                raise EtcdStartError(f"etcd member(s) {names} not healthy after {timeout:.0f} s\n{tails}")
            time.sleep(0.05)

    # --- queries ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The kos storage URL for this etcd: `etcd://127.0.0.1:PORT[,127.0.0.1:PORT...]`, with
        `?cacert=…&cert=…&key=…` when it serves TLS."""
        url = "etcd://" + ",".join(f"{h}:{p}" for h, p in self.endpoints)
        return url if self.tls is None else f"{url}?{self.tls.query}"

    def store_tls(self) -> EtcdTLS | None:
        """The store's TLS settings for this etcd (its CA and the client certificate), None when in clear."""
        if self.tls is None:
            return None
        return EtcdTLS(self.tls.cacert, self.tls.cert, self.tls.key)

    @property
    def members(self) -> int:
        return len(self._members)

    def running(self, i: int) -> bool:
        return self._members[i].running()

    def pids(self) -> list[int]:
        """The process ids of the members now running (benchmarks read their CPU time)."""
        return [m.proc.pid for m in self._members if m.proc is not None and m.running()]

    def leader(self, timeout: float = 15.0) -> int:
        """The index of the member that currently leads (waits for an election if needed)."""
        deadline = time.monotonic() + timeout
        while True:
            i = self._leader_now()
            if i is not None:
                return i
            if time.monotonic() > deadline:
                raise TimeoutError(f"no etcd member leads after {timeout:.0f} s")
            time.sleep(0.05)

    def _leader_now(self) -> int | None:
        for i, m in enumerate(self._members):
            if not m.running():
                continue
            try:
                st = _http_json(m.client_url + "/v3/maintenance/status", b"{}", context=self._context)
            except (OSError, ValueError):
                continue
            header = st.get("header")
            member_id = header.get("member_id") if isinstance(header, dict) else None
            if member_id is not None and st.get("leader") == member_id:
                return i
        return None

    # --- failover ---------------------------------------------------------------------------

    def kill(self, i: int) -> None:
        """SIGKILL member `i` (its data directory stays, for `restart`)."""
        m = self._members[i]
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait()

    def restart(self, i: int, timeout: float = _START_TIMEOUT) -> None:
        """Start member `i` again with its data directory and flags; returns once it is healthy."""
        if self._members[i].running():
            raise RuntimeError(f"etcd member {self._members[i].name} is still running")
        self._spawn(i, new=False)
        self._wait_healthy([i], timeout)

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 5 s) and remove the data directories.

        Members stop one at a time, the current leader first: a leader that receives
        SIGTERM hands leadership to a follower, and if its followers are already gone
        it waits out that transfer (several seconds) before exiting.
        """
        while True:
            running = [i for i, m in enumerate(self._members) if m.running()]
            if not running:
                break
            lead = self._leader_now() if len(running) > 1 else None
            proc = self._members[lead if lead is not None else running[0]].proc
            assert proc is not None
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for m in self._members:
            shutil.rmtree(m.data_dir, ignore_errors=True)
        _live.discard(self)

    def __enter__(self) -> EtcdProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EtcdProcess({self.url}, members={len(self._members)})"


__all__ = ["EtcdProcess", "EtcdStartError", "TLSFiles"]
