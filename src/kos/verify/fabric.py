"""Invariant 3 (ARCHITECTURE §8): every node's fabric holds exactly what the API says it should.

A node must hold its local NAs that have addresses, and the remote NAs (addressed,
implemented elsewhere) of every VNI in which it has a local NA — nothing else.
The nodes' fabric state comes from the simulated nodes' endpoint (`kos simnodes`), or for real switches from
reading them (kos.fabric.ovs.observe, `kos demo --fabric ovs`), which also reports what a restarting agent
would repair ("problems").
"""

from __future__ import annotations

import collections
from typing import Any

from kos.api import names
from kos.api.types import NetworkAttachment


def expected_state(nas: list[NetworkAttachment]) -> dict[str, dict[str, set[tuple[int, str, str]]]]:
    """node → {"local": {(vni, ip, ifc name)}, "remote": {(vni, ip, host ip)}} as the API demands."""
    local: dict[str, set[tuple[int, str, str]]] = collections.defaultdict(set)
    vnis_of: dict[str, set[int]] = collections.defaultdict(set)
    by_vni: dict[int, list[NetworkAttachment]] = collections.defaultdict(list)
    for na in nas:
        st = na.status
        if not st.ipv4:
            continue
        local[na.spec.node].add((st.address_vni, st.ipv4, names.interface_name(st.address_vni, st.ipv4)))
        vnis_of[na.spec.node].add(st.address_vni)
        by_vni[st.address_vni].append(na)
    out: dict[str, dict[str, set[tuple[int, str, str]]]] = {}
    for node in set(local) | set(vnis_of):
        remote = {
            (na.status.address_vni, na.status.ipv4, na.status.host_ip)
            for v in vnis_of[node]
            for na in by_vni[v]
            if na.spec.node != node and na.status.host_ip
        }
        out[node] = {"local": local[node], "remote": remote}
    return out


def fabric_violations(nas: list[NetworkAttachment], states: dict[str, dict[str, Any]]) -> list[str]:
    """Compare each node's reported fabric state with what the API demands."""
    want = expected_state(nas)
    out: list[str] = []
    for node in sorted(set(states) | set(want)):
        st = states.get(node)
        if st is None:
            if want[node]["local"]:
                out.append(f"fabric: node {node} has local NAs but no fabric state was reported for it")
            continue
        out += [f"fabric: node {node}: {p}" for p in st.get("problems", [])]
        have_local = {(i["vni"], i["guest_ip"], i["name"]) for i in st.get("local", [])}
        have_remote = {(r["vni"], r["guest_ip"], r["host_ip"]) for r in st.get("remote", [])}
        w = want.get(node, {"local": set(), "remote": set()})
        for vni, ip, name in sorted(w["local"] - have_local):
            out.append(f"fabric: node {node} lacks local interface {name} ({ip} in VNI {vni})")
        for vni, ip, name in sorted(have_local - w["local"]):
            out.append(f"fabric: node {node} holds local interface {name} ({ip} in VNI {vni}) that no NA needs")
        for vni, ip, host in sorted(w["remote"] - have_remote):
            out.append(f"fabric: node {node} lacks remote interface {ip} in VNI {vni} on host {host}")
        for vni, ip, host in sorted(have_remote - w["remote"]):
            out.append(
                f"fabric: node {node} holds remote interface {ip} in VNI {vni} on host {host} that it should not"
            )
    return out
