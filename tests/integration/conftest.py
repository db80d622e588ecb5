"""Fixtures shared by the integration tests: a real `kos apiserver` process, and plain HTTP to it.

`apiserver` is a module-scoped `kos apiserver --storage memory://` subprocess on a
free loopback port, started through the same console entry point users run and
always stopped (SIGTERM, then SIGKILL) when the module is done. Its log is kept
under pytest's tmp dir and quoted when it fails to start. `http` is a tiny
synchronous JSON client for that server (the standard library's http.client), for
tests that drive the server with other tools and need to set up or inspect objects
directly.
"""

from __future__ import annotations

import dataclasses
import http.client as httpclient
import json
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kos.apiserver.server import APIServer
from kos.client.rest import Client
from kos.controllers.manager import ControllerManager
from kos.testing.apiserver import running_apiserver
from kos.testing.controllers import start_cm

PREFIX = "/apis/network.example.com/v1alpha1"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class ApiserverProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _ready(port: int) -> bool:
    try:
        conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


def start_apiserver(workdir: Path, *extra: str) -> ApiserverProcess:
    """Start `kos apiserver` on a free port; retried on a port race; raises with the log tail on failure."""
    last = ""
    for _ in range(3):
        port = free_port()
        log_path = workdir / f"apiserver-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kos", "apiserver", "--storage", "memory://",
                 "--listen", f"127.0.0.1:{port}", "--insecure", *extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        server = ApiserverProcess(proc, port, log_path)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None:
                if _ready(port):
                    return server
                time.sleep(0.05)
        except BaseException:
            server.stop()
            raise
        server.stop()
        last = server.log_tail()
        if "address already in use" not in last:
            break
    raise RuntimeError(f"kos apiserver did not become ready within {START_TIMEOUT}s; log tail:\n{last}")


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiserverProcess]:
    server = start_apiserver(tmp_path_factory.mktemp("apiserver"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def apiserver_factory(tmp_path: Path) -> Iterator[Any]:
    """Start extra servers with extra flags (`factory("--watch-cache-size=100")`); all stopped afterwards."""
    started: list[ApiserverProcess] = []

    def start(*extra: str) -> ApiserverProcess:
        server = start_apiserver(tmp_path, *extra)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


# --- plain HTTP ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Response:
    status: int
    headers: httpclient.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """Synchronous JSON requests against one server; `path` is relative to the server root."""

    def __init__(self, url: str) -> None:
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Response:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            h["Content-Type"] = content_type
        conn = httpclient.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """The decoded answer of a request that must succeed (2xx)."""
        r = self.request(method, path, body, **kw)
        assert 200 <= r.status < 300, f"{method} {path} -> {r.status}: {r.body[:2000]!r}"
        return r.json()

    def get(self, path: str) -> Any:
        return self.ok("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.ok("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.ok("PUT", path, body)

    @staticmethod
    def path(namespace: str, plural: str, name: str = "", sub: str = "") -> str:
        """`/apis/network.example.com/v1alpha1/namespaces/{namespace}/{plural}[/{name}[/{sub}]]`."""
        return "/".join(p for p in (f"{PREFIX}/namespaces/{namespace}/{plural}", name, sub) if p)


@pytest.fixture(scope="module")
def http(apiserver: ApiserverProcess) -> Http:
    return Http(apiserver.url)


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    """An in-process apiserver (memory store) per test; modules that need other settings override it.

    Every in-process apiserver a test starts through `running_apiserver` (this fixture, the modules'
    own fixtures, and tests that start one inline) has its watch cache checked against the store
    afterwards (`kos.testing.cachecheck`).
    """
    async with running_apiserver() as s:
        yield s


@pytest.fixture
async def client(server: APIServer) -> AsyncIterator[Client]:
    async with Client(server.url) as c:
        yield c


@pytest.fixture
async def cm(server: APIServer) -> AsyncIterator[ControllerManager]:
    c = await start_cm(server)
    yield c
    await c.stop()
