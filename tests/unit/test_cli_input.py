"""Command-line values are user input too: checked with fullmatch and bounds, one clear error each."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from kos.cli.driver import duration
from kos.cli.settings import host_port
from kos.driver.run import RUN_ID, DriverError, parse_nodes
from kos.storage.url import StoreURLError, open_store


@pytest.mark.parametrize(("text", "seconds"), [("15s", 15), ("1m", 60), ("500ms", 0.5), ("2h", 7200), ("1m30s", 90),
                                               ("10", 10), (" 3s ", 3), ("1.5m", 90)])  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1x", "\u0663s", "1" * 40 + "s", "s", "1..5s", "1m30"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_run_ids_are_fullmatched() -> None:
    assert RUN_ID.fullmatch("0612-1530-0042") and RUN_ID.fullmatch("run.1")
    for bad in ("run\n", ".run", "a/b", "x" * 101, ""):
        assert not RUN_ID.fullmatch(bad), bad


def test_nodes() -> None:
    assert parse_nodes("node-:3") == ["node-0", "node-1", "node-2"]
    assert parse_nodes("a, b,c") == ["a", "b", "c"]
    for bad in ("node-:0", "n:99999999", "n:" + "9" * 5000, "n:\u0663", "N:3", "bad node,x", "node\n-1,x"):
        with pytest.raises(DriverError):
            parse_nodes(bad)


@pytest.mark.parametrize("bad", [":" + "9" * 5000, ":\u0663", ":65536", "host", ":-1", ": 80"])
def test_bad_host_ports(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        host_port(bad)


async def test_bad_etcd_ports() -> None:
    for url in ("etcd://h:" + "9" * 5000, "etcd://h:\u00b2", "etcd://h:70000"):
        with pytest.raises(StoreURLError):
            await open_store(url)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [(["agent", "--node", "Bad_Node", "--host-ip", "10.0.0.1", "--server", "http://127.0.0.1:9"], "--node"),
     (["agent", "--node", "node-1\n", "--host-ip", "10.0.0.1", "--server", "http://127.0.0.1:9"], "--node"),
     (["simnodes", "--name-prefix", "Node_", "--count", "2", "--server", "http://127.0.0.1:9"], "--name-prefix")],
)  # fmt: skip
def test_invalid_node_names_stop_the_agent_at_once(argv: list[str], fragment: str) -> None:
    r = subprocess.run([sys.executable, "-m", "kos", *argv], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and fragment in r.stdout + r.stderr, (r.stdout, r.stderr)


def test_driver_estimate_writes_the_distribution_and_exits_0(tmp_path: Path) -> None:
    """`--estimate` computes the plan only (no server); it used to crash summarising a run that never happened."""
    r = subprocess.run([sys.executable, "-m", "kos", "driver", "--estimate", "--nodes", "node-:10", "--num-nets", "3"],
                       check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "slots, avgPeers" in r.stdout
    assert list(tmp_path.glob("*/size-distribution*.csv"))
