"""Reading `ovs-ofctl dump-flows` back: parsing, grouping by cookie, and comparing with computed flows."""

from __future__ import annotations

from kos.api import names
from kos.fabric import flows
from kos.fabric.interface import LocalNetIfc, RemoteNetIfc
from kos.fabric.ovs.dump import DEFAULT_PRIORITY, by_cookie, canonical, parse_dump, parse_line

# what OVS 3.1 printed for these flows (`-O OpenFlow13 --no-stats --no-names dump-flows`)
DUMP = """\
 cookie=0x1d6010203bcde, priority=100,in_port=5 actions=set_field:0x2a->tun_id,goto_table:1
 priority=0 actions=goto_table:1
 cookie=0x1d6010203bcde, table=1, priority=110,arp,tun_id=0x2a,arp_tpa=10.1.2.3 actions=output:5
 cookie=0x2d6010203bcdf, table=1, priority=110,arp,tun_id=0x2a,arp_tpa=10.1.2.4 actions=set_field:192.168.254.2->tun_dst,output:10
 cookie=0x1d6010203bcde, table=1, priority=100,tun_id=0x2a,dl_dst=d6:01:02:03:bc:de actions=output:5
 cookie=0x2d6010203bcdf, table=1, priority=100,tun_id=0x2a,dl_dst=d6:01:02:03:bc:df actions=set_field:192.168.254.2->tun_dst,output:10
 table=1, priority=0 actions=drop
"""


def test_parse_line_with_stats_and_headers() -> None:
    assert parse_line("OFPST_FLOW reply (OF1.3) (xid=0x2):") is None
    assert parse_line("") is None
    f = parse_line(
        " cookie=0x1d6010203bcde, duration=0.009s, table=0, n_packets=3, n_bytes=180, idle_age=1, "
        "priority=100,in_port=5 actions=set_field:0x2a->tun_id,goto_table:1"
    )
    assert f is not None
    assert (f.cookie, f.table, f.priority) == (0x1D6010203BCDE, 0, 100)
    assert f.match == frozenset({("in_port", "5")})
    assert f.actions == "set_field:0x2a->tun_id,goto_table:1"


def test_defaults_omitted_by_ovs() -> None:
    f = parse_line(" actions=drop")
    assert f is not None and (f.cookie, f.table, f.priority, f.match) == (0, 0, DEFAULT_PRIORITY, frozenset())


def test_dump_equals_computed_flows() -> None:
    dumped = parse_dump(DUMP)
    assert len(dumped) == 7
    local = LocalNetIfc("kosd6010203bcde", 0x2A, "d6:01:02:03:bc:de", "10.1.2.3")
    remote = RemoteNetIfc(0x2A, "d6:01:02:03:bc:df", "10.1.2.4", "192.168.254.2")
    computed = flows.default_flows() + flows.local_flows(local, 5) + flows.remote_flows(remote, 10)
    assert {canonical(f) for f in computed} == set(dumped)


def test_by_cookie_and_fields() -> None:
    groups = by_cookie(parse_dump(DUMP))
    assert sorted(groups) == [0, 0x1D6010203BCDE, 0x2D6010203BCDF]
    remote = groups[0x2D6010203BCDF]
    assert {f.tun_dst for f in remote} == {"192.168.254.2"}
    arp = next(f for f in remote if f.field("arp") is not None)
    assert arp.field("arp_tpa") == "10.1.2.4" and arp.field("tun_id") == "0x2a"
    assert arp.match_text == "arp,tun_id=0x2a,arp_tpa=10.1.2.4"


def test_names_derivation_round_trips_through_a_dump() -> None:
    vni, ip = 0x1ABCDE, "10.1.2.3"
    ifc = LocalNetIfc(names.interface_name(vni, ip), vni, names.mac_address(vni, ip), ip)
    text = "\n".join(
        f" cookie={f.cookie:#x}, table={f.table}, priority={f.priority},{f.matches()} actions={','.join(f.actions)}"
        for f in flows.local_flows(ifc, 77)
    )
    assert {canonical(f) for f in flows.local_flows(ifc, 77)} == set(parse_dump(text))
