"""`kos apiserver` as a process: it will not start without TLS files or `--insecure` (one line, exit 2);
`--insecure` serves plain HTTP; with TLS files it serves HTTPS and picks up rotated files while it runs."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from kos.cli.apiserver import NO_TLS
from kos.testing.process import APIServerProcess
from kos.testing.tlsfiles import TestPKI

KOS = [sys.executable, "-m", "kos", "apiserver", "--listen", "127.0.0.1:0", "--log-level", "warning"]


def refused(*flags: str) -> str:
    r = subprocess.run([*KOS, *flags], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2, r
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_without_tls_files_or_insecure_it_says_what_is_missing_and_exits_2() -> None:
    assert refused() == f"kos apiserver: {NO_TLS}"
    assert NO_TLS == ("serve HTTPS with --tls-cert-file and --tls-private-key-file, "
                      "or plain HTTP without authentication with --insecure")  # fmt: skip


def test_flags_that_do_not_go_together_exit_2(tmp_path: Path) -> None:
    pki = TestPKI(tmp_path)
    cert, key, ca = str(pki.cert_file), str(pki.key_file), str(pki.ca_file)
    assert refused("--tls-cert-file", cert) == (
        "kos apiserver: --tls-cert-file and --tls-private-key-file go together: give both")  # fmt: skip
    assert refused("--insecure", "--tls-cert-file", cert, "--tls-private-key-file", key) == (
        "kos apiserver: --insecure serves plain HTTP without authentication: it cannot take --tls-cert-file, "
        "--tls-private-key-file")  # fmt: skip
    assert refused("--insecure", "--client-ca-file", ca, "--users-group", "devs") == (
        "kos apiserver: --insecure serves plain HTTP without authentication: it cannot take --client-ca-file, "
        "--users-group")  # fmt: skip
    assert refused("--tls-cert-file", cert, "--tls-private-key-file", ca) == (
        f"kos apiserver: the TLS files do not load: {ca}: not a PEM private key"
    )
    assert "is not an existing file" in refused(
        "--tls-cert-file", str(tmp_path / "nope"), "--tls-private-key-file", key
    )


class Running:
    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen([*KOS, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("kos apiserver ready at "), (line, self.proc.stderr.read() if self.proc.stderr else "")
        self.url = line.split()[-1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=20)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


def test_insecure_serves_plain_http(running: list[Running]) -> None:
    server = Running("--insecure")
    running.append(server)
    assert server.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server.url + "/apis/network.example.com/v1alpha1/subnets", timeout=10) as r:
        assert r.status == 200


def test_tls_serves_https_and_reloads_rotated_files(tmp_path: Path, running: list[Running]) -> None:
    pki = TestPKI(tmp_path)
    server = Running("--tls-cert-file", str(pki.cert_file), "--tls-private-key-file", str(pki.key_file),
                     "--client-ca-file", str(pki.client_ca_file))  # fmt: skip
    running.append(server)
    assert server.url.startswith("https://127.0.0.1:")
    ctx = pki.client_context()
    with urllib.request.urlopen(server.url + "/healthz", timeout=10, context=ctx) as r:
        assert r.status == 200
    with pytest.raises(OSError):  # plain HTTP is not spoken
        urllib.request.urlopen(server.url.replace("https:", "http:") + "/healthz", timeout=10)
    rotated = pki.new_server()
    pki.install(rotated)
    host, port = server.url.removeprefix("https://").split(":")
    deadline = time.monotonic() + 20  # the server looks at its files once a second
    while served_serial(ctx, host, int(port)) != rotated.cert.serial_number:
        assert time.monotonic() < deadline, "the rotated certificate was not served"
        time.sleep(0.1)


def served_serial(ctx: ssl.SSLContext, host: str, port: int) -> int:
    with socket.create_connection((host, port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_the_process_harness_serves_https_when_given_tls_files(tmp_path: Path) -> None:
    pki = TestPKI(tmp_path / "pki")
    tls = ["--tls-cert-file", str(pki.cert_file), "--tls-private-key-file", str(pki.key_file)]
    server = APIServerProcess("memory://", tmp_path / "apiserver.log", extra=tls, client_ssl=pki.client_context())
    try:
        server.wait_ready()
        assert server.url.startswith("https://")
    finally:
        server.stop()
