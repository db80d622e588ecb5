"""`kos demo`'s settings per fabric: the workload defaults of `--fabric ovs` and of the simulated demo, what only
one of them takes, and the OVS demo's leftover detection by name (no root needed)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from kos.cli import demo, demoovs
from kos.cli.main import main
from kos.fabric.ovs import lab


def settings(*argv: str) -> demo.DemoSettings:
    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    return demo.settings_from(p.parse_args(list(argv)))


def test_each_fabric_has_its_own_workload_defaults_and_given_values_win() -> None:
    sim = settings()
    assert (sim.fabric, sim.num_attachments, sim.rate, sim.num_nets, sim.top_net_size, sim.test_fraction) == (
        "sim", 1000, 100.0, 30, 60, 0.0)  # fmt: skip
    ovs = settings("--fabric", "ovs")
    assert (ovs.fabric, ovs.hosts, ovs.num_attachments, ovs.rate, ovs.num_nets, ovs.top_net_size,
            ovs.test_fraction) == ("ovs", 3, 300, 10.0, 10, 40, 0.3)  # fmt: skip
    given = settings(
        "--fabric", "ovs", "--hosts", "4", "--num-attachments", "50", "--rate", "2", "--test-fraction", "0"
    )
    assert (given.hosts, given.num_attachments, given.rate, given.test_fraction) == (4, 50, 2.0, 0.0)


def test_what_only_one_fabric_takes_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--test-fraction", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "kos demo: --test-fraction / KOS_TEST_FRACTION: ping tests need real interfaces: use it with --fabric ovs"
    )
    assert main(["demo", "--fabric", "ovs", "--state-dir", "/tmp/x"]) == 2
    assert f"--fabric ovs keeps its state in {demoovs.WORKDIR}" in capsys.readouterr().err


def test_the_run_id_hence_every_guest_namespace_starts_with_the_prefix_the_cleanup_looks_for() -> None:
    assert demoovs.host_names(3) == ["host-0", "host-1", "host-2"]
    cluster = types.SimpleNamespace(server="https://192.168.250.254:6443", client_config=lambda: None)
    hosts = types.SimpleNamespace(hosts=[types.SimpleNamespace(name=n) for n in demoovs.host_names(2)])
    s = settings("--fabric", "ovs", "--output", "/tmp/out")
    d = demoovs.driver_settings(demoovs.OVSDemo(
        hosts=2, num_attachments=s.num_attachments, rate=s.rate, num_nets=s.num_nets, top_net_size=s.top_net_size,
        threads=s.threads, seed=s.seed, test_fraction=s.test_fraction, output=Path("/tmp/out"), progress="none",
        insecure=False, monitoring=False), cluster, hosts)  # type: ignore[arg-type]  # fmt: skip
    assert d.run_id.startswith(f"{demoovs.PREFIX}-")  # TestByPing's namespaces are <run id>-<n>
    assert d.nodes == ("host-0", "host-1") and d.round_robin and d.test_fraction == 0.3 and d.keep_population
    assert Path(d.test_script_dir, "TestByPing").is_file()


def test_processes_naming_a_directory_are_found_by_whole_path_components(tmp_path: Path) -> None:
    d = tmp_path / "work"
    sibling = tmp_path / "workshop"
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", arg])
             for arg in (f"--pidfile={d}/x.pid", f"unix:{d}/db.sock", str(d), str(sibling), f"--x={sibling}/y")]  # fmt: skip
    try:
        found = set(lab.processes_naming(d))
        assert found >= {p.pid for p in procs[:3]}
        assert not found & {p.pid for p in procs[3:]}, "a directory whose name merely starts the same is not it"
        assert os.getpid() not in found
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_more_hosts_than_a_lab_holds_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--fabric", "ovs", "--hosts", str(demoovs.MAX_HOSTS + 1)]) == 2
    assert f"more than the {demoovs.MAX_HOSTS} hosts" in capsys.readouterr().err
