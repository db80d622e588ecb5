"""What a restarting OVS fabric repairs and removes, from what the switch holds (pure planning)."""

from __future__ import annotations

from kos.api import names
from kos.fabric import flows
from kos.fabric.interface import LocalNetIfc, RemoteNetIfc
from kos.fabric.ovs.dump import DumpedFlow, canonical
from kos.fabric.ovs.ovsdb import PortRow
from kos.fabric.ovs.reconcile import plan_defaults, plan_local, plan_remote, port_external_ids

VTEP = 10


def local(vni: int, ip: str) -> LocalNetIfc:
    return LocalNetIfc(names.interface_name(vni, ip), vni, names.mac_address(vni, ip), ip)


def remote(vni: int, ip: str, host: str = "192.168.254.2") -> RemoteNetIfc:
    return RemoteNetIfc(vni, names.mac_address(vni, ip), ip, host)


def port(ifc: LocalNetIfc, ofport: int, error: str = "") -> PortRow:
    return PortRow(ifc.name, "internal", ofport, error, port_external_ids(ifc))


def installed(*groups: list[flows.Flow]) -> list[DumpedFlow]:
    return [canonical(f) for g in groups for f in g]


def test_complete_interfaces_need_nothing() -> None:
    a, b = local(5, "10.0.0.1"), local(5, "10.0.0.2")
    r = remote(5, "10.0.0.3")
    dumped = installed(flows.default_flows(), flows.local_flows(a, 2), flows.local_flows(b, 3),
                       flows.remote_flows(r, VTEP))  # fmt: skip
    lp = plan_local([port(a, 2), port(b, 3)], dumped)
    assert lp.local == [a, b] and lp.lines == [] and lp.delete_ports == []
    rp = plan_remote(dumped, VTEP, taken={(a.vni, a.guest_ip), (b.vni, b.guest_ip)})
    assert rp.remote == [r] and rp.lines == []
    assert plan_defaults(dumped) == []


def test_missing_flows_are_readded_and_extra_ones_deleted_strictly() -> None:
    a = local(5, "10.0.0.1")
    fs = flows.local_flows(a, 2)
    c = flows.cookie(flows.COOKIE_LOCAL, a.guest_mac)
    old_in_port = DumpedFlow(
        c, 0, 100, frozenset({("in_port", "9")}), "in_port=9", "set_field:0x5->tun_id,goto_table:1"
    )
    dumped = [*installed(fs[1:]), old_in_port]  # the table-0 flow is missing; one for an old port number is left
    plan = plan_local([port(a, 2)], dumped)
    assert plan.local == [a]
    assert plan.lines == [
        "add " + fs[0].add_spec(),
        f"delete_strict cookie={c:#x}/-1,table=0,priority=100,in_port=9",
    ]


def test_changed_actions_are_replaced_in_place() -> None:
    a = local(5, "10.0.0.1")
    dumped = installed(flows.local_flows(a, 2))
    plan = plan_local([port(a, 4)], dumped)  # vswitchd gave the port another number
    # same table, priority and match → an add replaces it; only the in_port flow's match changed
    assert sorted(ln.split(" ", 1)[0] for ln in plan.lines) == ["add", "add", "add", "delete_strict"]


def test_half_created_ports_and_stale_flows_are_removed() -> None:
    good, bad = local(5, "10.0.0.1"), local(5, "10.0.0.2")
    ghost = local(6, "10.0.0.9")  # flows without a port
    dumped = installed(flows.local_flows(good, 2), flows.local_flows(bad, 3), flows.local_flows(ghost, 7))
    unknown = DumpedFlow(7 << 48 | 1, 1, 100, frozenset({("dl_dst", "00:00:00:00:00:01")}), "", "drop")
    foreign = DumpedFlow(0, 1, 5, frozenset({("dl_dst", "00:00:00:00:00:02")}), "", "drop")
    other = PortRow("eth9", "system", 8, "", {})
    plan = plan_local([port(good, 2), port(bad, -1, "could not open network device"), other],
                      [*dumped, unknown, foreign])  # fmt: skip
    assert plan.local == [good]
    assert plan.delete_ports == [bad.name]
    deleted = {ln for ln in plan.lines if ln.startswith("delete ")}
    assert deleted == {
        f"delete cookie={flows.cookie(flows.COOKIE_LOCAL, bad.guest_mac):#x}/-1",
        f"delete cookie={flows.cookie(flows.COOKIE_LOCAL, ghost.guest_mac):#x}/-1",
        f"delete cookie={7 << 48 | 1:#x}/-1",
    }
    assert any("eth9" in n and "left alone" in n for n in plan.notes)  # not the fabric's port: untouched


def test_reserved_ports_are_skipped_and_duplicates_removed() -> None:
    a = local(5, "10.0.0.1")
    twin = PortRow("other-name", "internal", 3, "", port_external_ids(a))
    plan = plan_local([PortRow("kos", "internal", 65534, "", {}), port(a, 2), twin],
                      installed(flows.local_flows(a, 2)), reserved=("kos", "vtep"))  # fmt: skip
    assert plan.local == [a] and plan.delete_ports == ["other-name"]
    assert not any("kos " in n for n in plan.notes)


def test_remote_interfaces_read_back_repaired_or_stale() -> None:
    ok = remote(5, "10.0.0.3")
    moved = remote(5, "10.0.0.4")
    half = remote(5, "10.0.0.5")
    clash = remote(5, "10.0.0.1")
    ok_f, moved_f, half_f = flows.remote_flows(ok, VTEP), flows.remote_flows(moved, 99), flows.remote_flows(half, VTEP)
    dumped = installed(ok_f, moved_f, half_f[:1], flows.remote_flows(clash, VTEP))  # half: its ARP flow is gone
    plan = plan_remote(dumped, VTEP, taken={(5, "10.0.0.1")})
    assert plan.remote == sorted([ok, moved], key=lambda r: flows.cookie(flows.COOKIE_REMOTE, r.guest_mac))
    assert sorted(plan.lines) == sorted(
        ["add " + f.add_spec() for f in flows.remote_flows(moved, VTEP)]  # the vtep's number changed: replaced
        + [f"delete cookie={flows.cookie(flows.COOKIE_REMOTE, half.guest_mac):#x}/-1",  # its IP cannot be read back
           f"delete cookie={flows.cookie(flows.COOKIE_REMOTE, clash.guest_mac):#x}/-1"]  # a local one holds the pair
    )  # fmt: skip


def test_default_flows_repaired() -> None:
    lines = plan_defaults(installed(flows.default_flows()[:1]))
    assert lines == ["add " + flows.default_flows()[1].add_spec()]


def test_a_numbered_port_reporting_an_error_is_kept() -> None:
    a = local(5, "10.0.0.1")  # e.g. its tap was moved into a guest namespace and vswitchd grumbles about it
    plan = plan_local([port(a, 2, "ioctl failed")], installed(flows.local_flows(a, 2)))
    assert plan.local == [a] and plan.delete_ports == [] and plan.lines == []
    assert any("kept" in n for n in plan.notes)
