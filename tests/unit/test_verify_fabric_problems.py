"""kos.verify's fabric check takes a node's own problems (what a real switch would need repaired, from
kos.fabric.ovs.observe) as violations beside the comparison with the API."""

from __future__ import annotations

from kos.verify.fabric import fabric_violations


def test_a_nodes_problems_are_violations_named_by_node() -> None:
    states = {"host-0": {"local": [], "remote": [], "problems": ["1 stale flow(s) with cookie 0x1: removed"]},
              "host-1": {"local": [], "remote": []}}  # fmt: skip
    assert fabric_violations([], states) == ["fabric: node host-0: 1 stale flow(s) with cookie 0x1: removed"]


def test_without_problems_an_empty_system_on_empty_switches_is_clean() -> None:
    assert fabric_violations([], {"host-0": {"local": [], "remote": [], "problems": []}}) == []
