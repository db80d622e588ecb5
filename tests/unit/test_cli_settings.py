"""Every command's settings: a bad value, as a flag or as KOS_<FLAG>, is one line naming both, and exit status 2.

The commands run in process (`kos.cli.main.main`): a bad value stops them before they start anything. One
subprocess test shows the same end to end for `python -m kos`, without a traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from kos.cli.main import main
from kos.cli.settings import env_name

SERVER = ["--server", "http://127.0.0.1:9"]

CASES = [
    # (command and the flags it needs, flag, bad value, the problem as printed)
    (["apiserver"], "--log-format", "yaml", "'yaml' is not one of text, json"),
    (["apiserver"], "--max-headers", "2", "2 is less than 8"),
    (["apiserver"], "--header-timeout", "0", "0 is not a positive number"),
    (["apiserver"], "--listen", "localhost", "'localhost' is not HOST:PORT"),
    (["apiserver"], "--storage", "mysql://x", "'mysql://x': use memory://, sqlite:///path or etcd://host:port"),
    (["controller-manager", *SERVER], "--log-level", "verbose", "'verbose' is not one of debug, info, warning, error"),
    (["controller-manager", *SERVER], "--ipam-workers", "0", "0 is less than 1"),
    (["controller-manager", *SERVER], "--metrics-listen", "h:99999", "'h:99999' is not HOST:PORT"),
    (["controller-manager", *SERVER], "--controllers", "gc", "unknown gc; choose from subnet-validator, ipam"),
    (["controller-manager"], "--server", "ftp://x", "'ftp://x' is not an http:// or https:// URL"),
    (["agent", *SERVER, "--host-ip", "10.0.0.1"], "--fabric", "p4", "'p4' is not one of sim, logger, ovs"),
    (["agent", *SERVER, "--host-ip", "10.0.0.1"], "--workers", "-1", "-1 is less than 1"),
    (["agent", *SERVER, "--host-ip", "10.0.0.1"], "--metrics-listen", "9294", "'9294' is not HOST:PORT"),
    (["agent", *SERVER], "--host-ip", "10.0.0", "'10.0.0' is not an IPv4 address"),
    (["agent", *SERVER, "--host-ip", "10.0.0.1"], "--allowed-programs", "bin/x", "not absolute paths: bin/x"),
    (["agent", *SERVER, "--host-ip", "10.0.0.1"], "--watch-mux", None, None),  # a switch: env form only, below
    (["simnodes", *SERVER], "--count", "zero", "'zero' is not an integer"),
    (["simnodes", *SERVER, "--count", "1"], "--listen", "::", "'::' is not HOST:PORT"),
    (["simnodes", *SERVER, "--count", "1"], "--fabric", "ovs", "'ovs' is not one of sim"),
    (["driver", *SERVER], "--ops-distribution", "burst", "'burst' is not one of steady, poisson"),
    (["driver", *SERVER], "--threads", "0", "0 is less than 1"),
    (["driver", *SERVER], "--test-fraction", "2", "2 is not between 0 and 1"),
    (["driver"], "--kubeconfig", "/nonexistent/kubeconfig", "cannot read the kubeconfig /nonexistent/kubeconfig: No such file or directory"),
    (["up"], "--nodes", "0", "0 is less than 1"),
    (["up"], "--listen", "127.0.0.1:x", "'127.0.0.1:x' is not HOST:PORT"),
    (["demo"], "--progress", "dots", "'dots' is not one of auto, bar, lines, none"),
    (["demo"], "--rate", "-5", "-5 is not a positive number"),
    (["verify"], "--server", "localhost:8080", "'localhost:8080' is not an http:// or https:// URL"),
    (["verify", *SERVER], "--wait", "soon", "'soon' is not a number"),
    (["trace", *SERVER, "a/x", "a/y"], "--nodes-endpoint", "nodes", "'nodes' is not an http:// or https:// URL"),
]  # fmt: skip
VALUES = [c for c in CASES if c[2] is not None]


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and not out, (out, err)
    return lines[0]


@pytest.mark.parametrize(("base", "flag", "value", "problem"), VALUES, ids=[f"{c[0][0]}{c[1]}" for c in VALUES])
def test_a_bad_flag_value(
    capsys: pytest.CaptureFixture[str], base: list[str], flag: str, value: str, problem: str
) -> None:
    assert main([*base[:1], f"{flag}={value}", *base[1:]]) == 2
    assert one_line(capsys) == f"kos {base[0]}: {flag} / {env_name(flag)}: {problem}"


@pytest.mark.parametrize(("base", "flag", "value", "problem"), VALUES, ids=[f"{c[0][0]}{c[1]}" for c in VALUES])
def test_a_bad_environment_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, base: list[str], flag: str, value: str,
    problem: str,
) -> None:  # fmt: skip
    monkeypatch.setenv(env_name(flag), value)
    assert main(base) == 2
    assert one_line(capsys) == f"kos {base[0]}: {flag} / {env_name(flag)}: {problem}"


def test_a_bad_switch_in_the_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOS_WATCH_MUX", "sometimes")
    assert main(["agent", *SERVER, "--host-ip", "10.0.0.1"]) == 2
    assert one_line(capsys) == "kos agent: --watch-mux / KOS_WATCH_MUX: 'sometimes': use true or false"


@pytest.mark.parametrize("command", ["controller-manager", "agent", "simnodes", "verify", "trace"])
def test_a_missing_required_flag(capsys: pytest.CaptureFixture[str], command: str) -> None:
    others = {"trace": ["--nodes-endpoint", "http://x", "a/x", "a/y"], "agent": ["--host-ip", "10.0.0.1"],
              "simnodes": ["--count", "1"]}  # fmt: skip
    assert main([command, *others.get(command, [])]) == 2
    assert (
        one_line(capsys)
        == f"kos {command}: --server / KOS_SERVER: required: give the flag, or --kubeconfig / KOS_KUBECONFIG"
    )


def test_a_variable_for_another_command_does_not_matter(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """KOS_COUNT and KOS_FABRIC are other commands' flags: `kos driver` must not even read them (it used to)."""
    monkeypatch.setenv("KOS_COUNT", "many")
    monkeypatch.setenv("KOS_FABRIC", "p4")
    monkeypatch.setenv("KOS_PROGRESS", "dots")  # the driver's own, but the flag given below wins
    assert main(["driver", *SERVER, "--progress", "none", "--threads", "0"]) == 2
    assert one_line(capsys) == "kos driver: --threads / KOS_THREADS: 0 is less than 1"


def test_a_cross_flag_problem_is_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simnodes", *SERVER, "--count", "2", "--name-prefix", "Node_"]) == 2
    assert one_line(capsys).startswith("kos simnodes: --name-prefix / KOS_NAME_PREFIX: 'Node_' does not make valid")
    assert main(["agent", *SERVER, "--host-ip", "10.0.0.1", "--fabric", "ovs", "--ovsdb", "/run/db.sock"]) == 2
    assert one_line(capsys) == "kos agent: --ovsdb / KOS_OVSDB: '/run/db.sock': use unix:PATH or tcp:HOST:PORT"


def test_argparse_own_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apiserver", "--no-such-flag"]) == 2
    assert one_line(capsys) == "kos: unrecognized arguments: --no-such-flag"
    assert main(["apiserver", "--listen"]) == 2
    assert one_line(capsys) == "kos apiserver: argument --listen: expected one argument"


def test_python_m_kos_prints_one_line_and_no_traceback() -> None:
    env = {"KOS_LOG_LEVEL": "verbose", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "kos", "apiserver"], check=False, capture_output=True, text=True,
                       timeout=60, env=env)  # fmt: skip
    assert r.returncode == 2 and not r.stdout
    assert (
        r.stderr == "kos apiserver: --log-level / KOS_LOG_LEVEL: 'verbose' is not one of debug, info, warning, error\n"
    )
