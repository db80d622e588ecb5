"""Every flag reads KOS_<FLAG> from the environment; bad values are one clear error."""

from __future__ import annotations

import argparse

import pytest

from kos.cli.common import EnvDefaultsParser, UsageError


def parser() -> EnvDefaultsParser:
    p = EnvDefaultsParser(prog="kos test")
    p.add_argument("--count", type=int, default=1, help="a number")
    p.add_argument("--name", default="a", help="a name")
    p.add_argument("--flag", action="store_true", help="a switch")
    p.add_argument("--mux", default=True, action=argparse.BooleanOptionalAction, help="on unless told")
    return p


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOS_COUNT", "7")
    monkeypatch.setenv("KOS_NAME", "b")
    monkeypatch.setenv("KOS_FLAG", "yes")
    monkeypatch.setenv("KOS_MUX", "false")
    a = parser().parse_args([])
    assert (a.count, a.name, a.flag, a.mux) == (7, "b", True, False)
    # the command line still wins
    assert parser().parse_args(["--count", "3", "--mux"]).count == 3
    assert parser().parse_args(["--mux"]).mux is True


def test_bad_environment_values_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOS_COUNT", "seven")
    with pytest.raises(UsageError, match="KOS_COUNT='seven'"):
        parser()
    monkeypatch.delenv("KOS_COUNT")
    monkeypatch.setenv("KOS_MUX", "maybe")
    with pytest.raises(UsageError, match="use true or false"):
        parser()


def test_help_names_the_variable_but_not_for_help_itself() -> None:
    text = parser().format_help()
    assert "[env KOS_COUNT]" in text and "KOS_HELP" not in text
