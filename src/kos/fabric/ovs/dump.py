"""Reading the switch's flows back (`ovs-ofctl --no-stats --no-names dump-flows`), grouped by cookie.

Every flow of an interface carries the cookie `kind << 48 | MAC` (`flows.py`),
so the cookie says which interface a flow belongs to and whether it is local
or remote (ARCHITECTURE §12.14). What the cookie does not carry — VNI, guest
IP, the tunnel destination — is read from the flow's match and actions.

A dumped flow is compared with a computed one in a canonical form: table,
priority, the match as a set of (field, value) pairs (OVS prints fields in
its own order), and the action text. Should a future OVS print an action
differently, the comparison merely finds a difference, and the repair it
causes is an in-place replacement of an identical flow: harmless.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from kos.fabric.flows import Flow

DEFAULT_PRIORITY = 32768
_STATS = {"duration", "n_packets", "n_bytes", "idle_age", "hard_age", "idle_timeout", "hard_timeout", "importance"}
_FLAGS = {"send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts", "no_byte_counts"}
_TUN_DST = re.compile(r"set_field:([0-9.]+)->tun_dst")


@dataclasses.dataclass(frozen=True, slots=True)
class DumpedFlow:
    cookie: int
    table: int
    priority: int
    match: frozenset[tuple[str, str]]
    match_text: str
    """The match as OVS printed it (for `delete_strict`)."""
    actions: str

    @property
    def key(self) -> tuple[int, int, frozenset[tuple[str, str]]]:
        """What identifies a flow in OpenFlow: an add with the same key replaces it."""
        return (self.table, self.priority, self.match)

    def field(self, name: str) -> str | None:
        for f, v in self.match:
            if f == name:
                return v
        return None

    @property
    def tun_dst(self) -> str | None:
        m = _TUN_DST.search(self.actions)
        return m.group(1) if m else None


def parse_line(line: str) -> DumpedFlow | None:
    """One line of dump-flows output; None for headers and blank lines."""
    text = line.strip()
    if not text or " actions=" not in f" {text}" or text.startswith(("OFPST_", "NXST_")):
        return None
    head, _, actions = f" {text}".partition(" actions=")
    cookie, table, priority = 0, 0, DEFAULT_PRIORITY
    match: list[tuple[str, str]] = []
    for raw in head.split(","):
        token = raw.strip()
        if not token:
            continue
        name, eq, value = token.partition("=")
        if name == "cookie":
            cookie = int(value.split("/")[0], 0)
        elif name == "table":
            table = int(value)
        elif name == "priority":
            priority = int(value)
        elif name in _STATS or (not eq and name in _FLAGS):
            continue
        else:
            match.append((name, value))
    return DumpedFlow(
        cookie=cookie,
        table=table,
        priority=priority,
        match=frozenset(match),
        match_text=",".join(f if not v else f"{f}={v}" for f, v in match),
        actions=actions.strip(),
    )


def parse_dump(text: str) -> list[DumpedFlow]:
    return [f for f in (parse_line(ln) for ln in text.splitlines()) if f is not None]


def by_cookie(dumped: Iterable[DumpedFlow]) -> dict[int, list[DumpedFlow]]:
    groups: dict[int, list[DumpedFlow]] = {}
    for f in dumped:
        groups.setdefault(f.cookie, []).append(f)
    return groups


def canonical(flow: Flow) -> DumpedFlow:
    """The flow as dump-flows shows it once installed."""
    return DumpedFlow(
        cookie=flow.cookie,
        table=flow.table,
        priority=flow.priority,
        match=frozenset(flow.match),
        match_text=flow.matches(),
        actions=",".join(flow.actions),
    )
