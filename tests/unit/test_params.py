"""Query parameters read as kube-apiserver's parameter codec reads them (kos.apiserver.params, listoptions)."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from kos.api.errors import BadRequest, Invalid
from kos.api.resources import SUBNETS
from kos.apiserver import listoptions, params


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("0", False), ("false", False), ("FALSE", False), ("False", False), ("", True), ("1", True),
     ("true", True), ("maybe", True), ("no", True)],
)  # fmt: skip
def test_flags(value: str | None, expected: bool) -> None:
    q = MultiDict[str]() if value is None else MultiDict([("watch", value)])
    assert params.flag(q, "watch") is expected
    assert params.optional_flag(q, "watch") is (None if value is None else expected)


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("42", 42), ("007", 7), ("9223372036854775807", (1 << 63) - 1)])
def test_int64(text: str, value: int) -> None:
    assert params.parse_int64(text, "limit") == value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("9" * 5000, "must be an integer"), ("9223372036854775808", "out of range"), ("-1", "at least 0"),
     ("1.5", "must be an integer"), ("1e3", "must be an integer"), ("\u0663", "must be an integer"),
     ("+1", "must be an integer"), ("", "must be an integer"), ("-", "must be an integer"), (" 1", "integer")],
)  # fmt: skip
def test_int64_errors(text: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as e:
        params.parse_int64(text, "limit")
    assert "limit" in e.value.message and fragment in e.value.message
    assert len(e.value.message) < 200  # a 5,000-digit value is not echoed whole


def test_int64_may_allow_negatives() -> None:
    assert params.parse_int64("-9223372036854775808", "gracePeriodSeconds", minimum=-(1 << 63)) == -(1 << 63)


def _errs(rv: str = "", match: str = "", cont: str = "", sie: bool | None = None) -> list[str]:
    return [str(e) for e in listoptions.list_errors(rv, match, cont, sie)]


def test_list_option_rules() -> None:
    assert _errs() == [] and _errs("5", "Exact") == [] and _errs("0", "NotOlderThan") == []
    assert _errs(match="Exact") == [
        "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
    ]
    assert _errs("0", "Exact") == [
        'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'
    ]
    assert _errs("1", "Newest") == [
        'resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", ""'
    ]
    assert len(_errs("", "Exact", "tok", False)) == 3
    assert _errs(sie=False) == ["sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"]


def test_watch_option_rules() -> None:
    w = listoptions.watch_errors
    assert w("", "", None) == [] and w("NotOlderThan", "", True) == [] and w("NotOlderThan", "", False) == []
    assert [e.detail for e in w("NotOlderThan", "", None)] == [
        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
    ]
    assert [e.detail for e in w("", "", True)] == [
        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    ]
    assert len(w("Exact", "tok", True)) == 3


def test_list_options_raise_422_for_list_options() -> None:
    with pytest.raises(Invalid) as e:
        listoptions.list_options(MultiDict([("resourceVersionMatch", "Exact")]), SUBNETS)
    assert e.value.message.startswith('ListOptions.meta.k8s.io "" is invalid')
    _, timeout = listoptions.watch_options(MultiDict([("timeoutSeconds", "0")]), SUBNETS)
    assert timeout is None  # 0 is the server's default, as get.go ListResource reads it
