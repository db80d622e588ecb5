"""Label and field selector parsing and matching."""

from __future__ import annotations

import pytest

from kos.api.selectors import SelectorError, parse_field_selector, parse_label_selector


def test_label_selector_operators() -> None:
    s = parse_label_selector("app=web, tier in (a,b),env!=prod,!legacy,team")
    assert s.matches({"app": "web", "tier": "a", "env": "dev", "team": "x"})
    assert not s.matches({"app": "web", "tier": "c", "env": "dev", "team": "x"})
    assert not s.matches({"app": "web", "tier": "a", "env": "prod", "team": "x"})
    assert not s.matches({"app": "web", "tier": "a", "team": "x", "legacy": ""})
    assert not s.matches({"app": "web", "tier": "a"})  # team missing
    assert s.matches({"app": "web", "tier": "b", "team": "x"})  # env missing satisfies env!=prod
    assert parse_label_selector("a==b").matches({"a": "b"})
    assert parse_label_selector("x notin (1,2)").matches({})
    assert parse_label_selector("").matches({"anything": "x"})
    assert parse_label_selector("example.com/app=x").matches({"example.com/app": "x"})
    assert parse_label_selector("a=").matches({"a": ""})


@pytest.mark.parametrize("bad", ["a=b=c", "=b", "a in b", "a in ()", "a,", "!a=b", "a b", "a=(", "bad key=x", "a=b,,c",
                                 "a=" + "x" * 64])  # fmt: skip
def test_label_selector_errors(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


def test_field_selector_operators_and_escapes() -> None:
    s = parse_field_selector("spec.node=n1,status.ipv4!=")
    assert s.matches({"spec.node": "n1", "status.ipv4": "10.0.0.2"})
    assert not s.matches({"spec.node": "n1", "status.ipv4": ""})
    assert not s.matches({"spec.node": "n2", "status.ipv4": "10.0.0.2"})
    assert s.equalities() == {"spec.node": "n1"}
    e = parse_field_selector(r"metadata.name==a\,b\=c\\d")
    assert e.requirements[0].value == "a,b=c\\d"
    assert e.matches({"metadata.name": "a,b=c\\d"})
    assert str(e) == r"metadata.name=a\,b\=c\\d"


@pytest.mark.parametrize("bad", ["spec.node", "=x", "a=b,", "a=b\\", r"a=\q", "a=b=c"])
def test_field_selector_errors(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_field_selector(bad)


BACKTRACKING = "a" + ".a" * 22 + "-"


@pytest.mark.parametrize(
    "bad",
    [BACKTRACKING, BACKTRACKING + "=v", f"k in ({BACKTRACKING})", "a" + ".a" * 5000 + "-", "Example.com/app=x",
     "app=web\u00a0", "k\u2003=v", "k=v\x00"],
)  # fmt: skip
def test_label_selectors_judged_as_kubernetes_does(bad: str) -> None:
    """Keys are qualified names (a lowercase DNS prefix), values label values; whitespace is ASCII only."""
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


def test_kubernetes_whitespace_separates_tokens() -> None:
    """k8s.io/apimachinery/pkg/labels isWhitespace: space, tab, CR and LF."""
    assert str(parse_label_selector("app = web ,\ttier\nin (a, b)\r")) == "app=web,tier in (a,b)"


def test_a_long_selector_error_is_cut_short() -> None:
    with pytest.raises(SelectorError) as e:
        parse_label_selector("a" + ".a" * 5000 + "-")
    assert len(str(e.value)) < 1000
