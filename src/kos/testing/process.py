"""Real kos processes for tests and benchmarks: start one, wait until it serves, SIGKILL it."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kos.util.ports import free_port


class KosProcess:
    """`kos <args>` as a child process with its output in a log file.

    `prefix` runs it through another program first, e.g. `nsenter --net=/run/netns/X --`
    to put it in a network namespace (nsenter execs, so the pid and signals are kos's).
    """

    def __init__(
        self, args: list[str], log_path: Path, env: dict[str, str] | None = None, prefix: list[str] | None = None
    ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "kos", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float = 20.0, context: ssl.SSLContext | None = None) -> None:
        """Poll `url` until it answers 200 (https verified with `context`); RuntimeError if the process exits or
        `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kos {' '.join(self.args)} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1, context=context) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"kos {' '.join(self.args)} did not serve {url} in {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class APIServerProcess(KosProcess):
    def __init__(
        self,
        storage: str,
        log_path: Path,
        port: int | None = None,
        extra: list[str] | None = None,
        host: str = "127.0.0.1",
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        """Plain HTTP (`--insecure`) unless `extra` has `--tls-cert-file`: then HTTPS, its readiness checked
        with `client_ssl` (a context trusting the server's CA)."""
        self.port = port or free_port()
        self.client_ssl = client_ssl
        tls = "--tls-cert-file" in (extra or [])
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        super().__init__(
            ["apiserver", "--storage", storage, "--listen", f"{host}:{self.port}", *_plain_unless_tls(extra or [])],
            log_path,
        )

    def wait_ready(self, timeout: float = 20.0) -> APIServerProcess:
        self.wait_http(self.url + "/readyz", timeout, self.client_ssl)
        return self


def _plain_unless_tls(extra: list[str]) -> list[str]:
    """`--insecure` (plain HTTP, no authentication) unless the flags given ask for TLS."""
    return extra if "--tls-cert-file" in extra else ["--insecure", *extra]
