"""`kos controller-manager`'s leader-election flags: on by default, kube-controller-manager's names and defaults,
Go-style durations, and impossible timings refused as one line (exit status 2)."""

from __future__ import annotations

import argparse

import pytest

from kos.cli.controller_manager import add_arguments, duration, leader_election_config
from kos.cli.main import main
from kos.cli.settings import env_name

SERVER = ["--server", "http://127.0.0.1:9"]


def parse(*flags: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args([*SERVER, *flags])


def test_leader_election_is_on_by_default_with_client_gos_timings() -> None:
    c = leader_election_config(parse())
    assert c is not None
    assert (c.name, c.namespace) == ("kos-controller-manager", "kube-system")
    assert (c.lease_duration, c.renew_deadline, c.retry_period) == (15.0, 10.0, 2.0)
    host, _, uid = c.identity.rpartition("_")
    assert host and len(uid) == 36
    assert leader_election_config(parse("--no-leader-elect")) is None


def test_the_flags_set_the_lease_and_timings() -> None:
    c = leader_election_config(parse("--leader-elect-lease-duration", "30s", "--leader-elect-renew-deadline", "20",
                                     "--leader-elect-retry-period", "500ms", "--leader-elect-resource-name", "cm",
                                     "--leader-elect-resource-namespace", "ops", "--leader-elect-identity", "me"))  # fmt: skip
    assert c is not None
    assert (c.name, c.namespace, c.identity, c.lease_duration, c.renew_deadline, c.retry_period) == (
        "cm",
        "ops",
        "me",
        30.0,
        20.0,
        0.5,
    )


@pytest.mark.parametrize(("raw", "seconds"), [("15", 15.0), ("15s", 15.0), ("1.5s", 1.5), ("500ms", 0.5), ("1m", 60.0)])
def test_durations(raw: str, seconds: float) -> None:
    assert duration(raw) == seconds


@pytest.mark.parametrize("raw", ["soon", "0s", "-1", "5d"])
def test_bad_durations(raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(raw)


def test_impossible_timings_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    flag = "--leader-elect-renew-deadline"
    assert main(["controller-manager", *SERVER, f"{flag}=20s"]) == 2
    out, err = capsys.readouterr()
    assert not out and err.splitlines() == [
        f"kos controller-manager: {flag} / {env_name(flag)}: the lease duration must be greater than the renew deadline"
    ]
