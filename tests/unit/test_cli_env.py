"""Every flag reads KOS_<FLAG> from the environment, checked exactly as the flag is (kos.cli.settings)."""

from __future__ import annotations

import argparse

import pytest

from kos.cli.settings import SettingError, SettingsParser, at_least, env_name, host_port


def parser() -> SettingsParser:
    p = SettingsParser(prog="kos test")
    p.add_argument("--count", type=at_least(1), default=1, help="a number")
    p.add_argument("--name", default="a", help="a name")
    p.add_argument("--level", default="info", choices=["debug", "info"], help="a choice")
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 1), help="an address")
    p.add_argument("--flag", action="store_true", help="a switch")
    p.add_argument("--mux", default=True, action=argparse.BooleanOptionalAction, help="on unless told")
    p.add_argument("--server", required=True, help="must be given")
    return p


def test_env_names() -> None:
    assert env_name("--log-level") == "KOS_LOG_LEVEL"
    assert env_name("--max-watchmux-connections-per-client") == "KOS_MAX_WATCHMUX_CONNECTIONS_PER_CLIENT"


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"COUNT": "7", "NAME": "b", "LEVEL": "debug", "LISTEN": ":80", "FLAG": "yes", "MUX": "false",
                 "SERVER": "s"}.items():  # fmt: skip
        monkeypatch.setenv("KOS_" + k, v)
    a = parser().parse_args([])
    assert (a.count, a.name, a.level, a.listen, a.flag, a.mux, a.server) == (7, "b", "debug", ("0.0.0.0", 80),
                                                                             True, False, "s")  # fmt: skip
    # the command line still wins, and a good flag is not spoilt by a variable it overrides
    monkeypatch.setenv("KOS_COUNT", "seven")
    b = parser().parse_args(["--count", "3", "--mux"])
    assert (b.count, b.mux) == (3, True)


def test_flag_defaults_stay_when_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    a = parser().parse_args(["--server", "s"])
    assert (a.count, a.level, a.listen, a.flag, a.mux) == (1, "info", ("127.0.0.1", 1), False, True)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [("KOS_COUNT", "seven", "--count / KOS_COUNT: 'seven' is not an integer"),
     ("KOS_COUNT", "0", "--count / KOS_COUNT: 0 is less than 1"),
     ("KOS_LEVEL", "verbose", "--level / KOS_LEVEL: 'verbose' is not one of debug, info"),
     ("KOS_LISTEN", "nowhere", "--listen / KOS_LISTEN: 'nowhere' is not HOST:PORT"),
     ("KOS_MUX", "maybe", "--mux / KOS_MUX: 'maybe': use true or false")],
)  # fmt: skip
def test_a_bad_environment_value_names_the_flag_and_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError) as e:
        parser().parse_args(["--server", "s"])
    assert str(e.value) == message and e.value.prog == "kos test"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--count", "0"], "--count / KOS_COUNT: 0 is less than 1"),
     (["--level", "verbose"], "--level / KOS_LEVEL: 'verbose' is not one of debug, info"),
     (["--listen", "h:70000"], "--listen / KOS_LISTEN: 'h:70000' is not HOST:PORT"),
     ([], "--server / KOS_SERVER: required: give the flag or set the variable")],
)  # fmt: skip
def test_a_bad_flag_reads_the_same(argv: list[str], message: str) -> None:
    with pytest.raises(SettingError, match="^" + message + "$"):
        parser().parse_args(argv if not argv or argv[0] == "--server" else [*argv, "--server", "s"])


def test_help_names_the_variable_but_not_for_help_itself() -> None:
    text = parser().format_help()
    assert "[env KOS_COUNT]" in text and "KOS_HELP" not in text and "[env KOS_SERVER] (required)" in text
