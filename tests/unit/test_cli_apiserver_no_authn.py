"""Review of issue 12: `kos apiserver` with TLS files and no way to authenticate says so when it starts.

`kos apiserver` without flags tells the user to "serve HTTPS with --tls-cert-file and --tls-private-key-file";
doing just that started a server that answered 401 "present a client certificate or a bearer token" to every
call, a client certificate included (no client CA was configured, so none was even asked for), and said
nothing about why. It now warns in one line on start that no authenticator is configured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kos.apiserver.auth.config import AuthSettings
from kos.cli.apiserver import NO_AUTHENTICATION, authenticates_no_one
from kos.testing.tlsfiles import TestPKI

KOS = [sys.executable, "-m", "kos", "apiserver", "--listen", "127.0.0.1:0", "--log-level", "warning"]


def _start_and_stop(*flags: str) -> list[str]:
    """The stderr lines of a `kos apiserver` that started (printed its ready line) and was then stopped."""
    proc = subprocess.Popen([*KOS, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("kos apiserver ready at "), line
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    return err.splitlines()


def test_which_settings_authenticate_no_one(tmp_path: Path) -> None:
    assert authenticates_no_one(AuthSettings())
    assert not authenticates_no_one(AuthSettings(client_ca_file=tmp_path))
    assert not authenticates_no_one(AuthSettings(token_auth_file=tmp_path))
    assert not authenticates_no_one(AuthSettings(requestheader_client_ca_file=tmp_path))
    assert not authenticates_no_one(AuthSettings(authentication_kubeconfig=tmp_path))


def test_tls_without_an_authenticator_warns_in_one_line(tmp_path: Path) -> None:
    pki = TestPKI(tmp_path)
    tls = ("--tls-cert-file", str(pki.cert_file), "--tls-private-key-file", str(pki.key_file))
    assert _start_and_stop(*tls) == [f"kos apiserver: {NO_AUTHENTICATION}"]
    assert _start_and_stop(*tls, "--client-ca-file", str(pki.client_ca_file)) == []
