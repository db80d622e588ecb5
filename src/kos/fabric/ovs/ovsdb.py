"""OVSDB in this process: the `ovs` package's IDL, driven by the asyncio event loop.

Why in process rather than `ovs-vsctl`: a port costs ~2.6 ms in one transaction
instead of ~6.4 ms per `ovs-vsctl` process, many ports go into one transaction
for little more, transactions are all-or-nothing, and the IDL's replica shows
what ovs-vswitchd made of each port (`ofport`, `error`) without another
process (ovs-datapath.md §3–4). `ovs-vsctl` exits 0 even when vswitchd could
not set a port up; here a port counts as created only once vswitchd gave it an
OpenFlow port number.

The IDL runs on the event loop without a thread (`idl.py`: `IdlSession`, its
pump, waits and transactions); this module says what the rows mean and what a
bridge or a port needs, and every operation here is a coroutine.

What waits for what: a change that ovs-vswitchd must act on bumps
`Open_vSwitch.next_cfg` in the same transaction; vswitchd copies it to
`cur_cfg` once it has reconfigured, in the same transaction that writes the
ports' `ofport` and `error` (this is what `ovs-vsctl` waits for by default).

Everything the `ovs` package returns is untyped; it stays inside this module and `idl.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterable, Mapping
from typing import Any

from kos.fabric.interface import FabricError
from kos.fabric.ovs.idl import DB, IdlSession, OVSDBError, OVSDBRefused
from kos.util.log import get_logger

__all__ = ["COLUMNS", "OVSDB", "PROTOCOLS", "NewPort", "OVSDBError", "OVSDBRefused", "PortRow"]

log = get_logger(__name__)

COLUMNS = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg"],
    "Bridge": ["name", "ports", "datapath_type", "fail_mode", "protocols"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type", "ofport", "error", "options", "mac", "external_ids"],
}
PROTOCOLS = ["OpenFlow10", "OpenFlow13", "OpenFlow14", "OpenFlow15"]
"""OpenFlow 1.3+ for bundles (`-O OpenFlow13 --bundle`); 1.0 so a plain `ovs-ofctl dump-flows kos` still works."""


@dataclasses.dataclass(frozen=True, slots=True)
class PortRow:
    """One port of the bridge as the database shows it (its first interface's columns)."""

    name: str
    type: str
    ofport: int
    """-1: vswitchd could not set it up; 0: not assigned yet."""
    error: str
    external_ids: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class NewPort:
    """An internal port to create: its name, MAC and what it is for."""

    name: str
    mac: str
    external_ids: Mapping[str, str]


def _ofport(iface: Any) -> int:
    v = iface.ofport
    return int(v[0]) if v else 0


def _error(iface: Any) -> str:
    v = iface.error
    return str(v[0]) if v else ""


class OVSDB:
    """A replica of the Open_vSwitch database's bridges, ports and interfaces, and transactions on it."""

    def __init__(self, session: IdlSession) -> None:
        self._session = session
        self._idl = session.idl

    @property
    def remote(self) -> str:
        """The OVSDB remote (`unix:PATH` or `tcp:HOST:PORT`)."""
        return self._session.remote

    @property
    def transactions(self) -> int:
        """Transactions committed so far (retries included)."""
        return self._session.transactions

    @classmethod
    async def connect(cls, remote: str, *, timeout: float = 10.0) -> OVSDB:
        """Connect and wait for the initial copy; `timeout` (seconds) bounds every later wait too. OVSDBError."""
        return cls(await IdlSession.connect(remote, COLUMNS, timeout=timeout))

    async def close(self) -> None:
        """Close the connection; waits still pending fail with OVSDBError."""
        await self._session.close()

    # --- reading the replica -----------------------------------------------------------------

    def _bridge(self, name: str) -> Any:
        for b in self._idl.tables["Bridge"].rows.values():
            if b.name == name:
                return b
        return None

    def _cur_cfg(self) -> int:
        root = self._session.root()
        return int(root.cur_cfg) if root is not None else 0

    def _interfaces(self) -> dict[str, Any]:
        return {i.name: i for i in self._idl.tables["Interface"].rows.values()}

    def ports(self, bridge: str) -> list[PortRow]:
        """The bridge's ports, with their first interface's state (what restart listing starts from)."""
        br = self._bridge(bridge)
        if br is None:
            return []
        out = []
        for p in br.ports:
            iface = p.interfaces[0] if p.interfaces else None
            if iface is None:
                out.append(PortRow(p.name, "", -1, "port has no interface", {}))
                continue
            out.append(PortRow(p.name, iface.type, _ofport(iface), _error(iface), dict(iface.external_ids)))
        return sorted(out, key=lambda r: r.name)

    # --- transactions ------------------------------------------------------------------------

    async def _applied(self, cfg: int | None, what: str) -> None:
        if cfg is not None:
            await self._session.until(
                lambda: self._cur_cfg() >= cfg,
                f"ovs-vswitchd to apply {what} (is ovs-vswitchd running and connected to {self.remote}?)",
            )

    async def ensure_bridge(
        self, bridge: str, *, datapath_type: str, vtep: str, vtep_options: Mapping[str, str]
    ) -> int:
        """Make the bridge and its VXLAN port exist as configured (idempotent); the VXLAN port's ofport.

        Raises OVSDBError when the bridge exists with another datapath type or vswitchd cannot set the port up.
        """
        build = functools.partial(self._put_bridge, bridge, datapath_type, vtep, vtep_options)
        cfg = await self._session.transact(build, f"setting up bridge {bridge}")
        await self._applied(cfg, f"bridge {bridge}")
        what = f"ovs-vswitchd to set up port {vtep} of bridge {bridge}"
        await self._session.until(lambda: self._settled(vtep), what)
        iface = self._interfaces().get(vtep)
        if iface is None or _ofport(iface) <= 0:
            err = _error(iface) if iface is not None else "the interface is missing"
            raise OVSDBError(f"ovs-vswitchd could not set up port {vtep} of bridge {bridge}: {err or 'no ofport'}")
        return _ofport(iface)

    def _put_bridge(self, bridge: str, datapath_type: str, vtep: str, vtep_options: Mapping[str, str],
                    txn: Any) -> bool:  # fmt: skip
        """In `txn`: create the bridge with its VXLAN port, or bring an existing one to the configuration."""
        root = self._session.root()
        if root is None:
            root = txn.insert(self._idl.tables[DB])
        br = self._bridge(bridge)
        if br is None:
            br = txn.insert(self._idl.tables["Bridge"])
            br.name = bridge
            br.datapath_type = datapath_type
            br.fail_mode = ["secure"]
            br.protocols = PROTOCOLS
            br.ports = [self._new_port(txn, bridge, "internal"),
                        self._new_port(txn, vtep, "vxlan", options=vtep_options)]  # fmt: skip
            root.addvalue("bridges", br.uuid)
            return True
        if (br.datapath_type or "system") != datapath_type:  # OVS reads "" as system
            raise OVSDBError(f"bridge {bridge} exists with datapath_type {br.datapath_type or 'system'!r}, not "
                             f"{datapath_type!r}: changing it would recreate the datapath and cut traffic; pass "
                             f"the bridge's datapath, or delete the bridge to change it")  # fmt: skip
        changed = False
        if list(br.fail_mode) != ["secure"]:
            br.fail_mode = ["secure"]
            changed = True
        if sorted(br.protocols) != sorted(PROTOCOLS):
            br.protocols = PROTOCOLS
            changed = True
        port = next((p for p in br.ports if p.name == vtep), None)
        if port is None:
            br.addvalue("ports", self._new_port(txn, vtep, "vxlan", options=vtep_options).uuid)
            changed = True
        else:
            iface = port.interfaces[0]
            if iface.type != "vxlan" or dict(iface.options) != dict(vtep_options):
                iface.type = "vxlan"
                iface.options = dict(vtep_options)
                changed = True
        return changed

    def _settled(self, *names: str) -> bool:
        """Whether vswitchd has acted on these interfaces: numbered them, or said why not."""
        ifaces = self._interfaces()
        for name in names:
            iface = ifaces.get(name)
            if iface is None or (_ofport(iface) == 0 and not _error(iface)):
                return False
        return True

    def _new_port(self, txn: Any, name: str, type_: str, *, mac: str = "", external_ids: Mapping[str, str] | None = None,
                  options: Mapping[str, str] | None = None) -> Any:  # fmt: skip
        iface = txn.insert(self._idl.tables["Interface"])
        iface.name = name
        iface.type = type_
        if mac:
            iface.mac = [mac]
        if external_ids:
            iface.external_ids = dict(external_ids)
        if options:
            iface.options = dict(options)
        port = txn.insert(self._idl.tables["Port"])
        port.name = name
        port.interfaces = [iface]
        return port

    async def add_ports(self, bridge: str, ports: list[NewPort]) -> list[int | FabricError]:
        """Create internal ports in one transaction and wait until vswitchd has set each up.

        Per port: its ofport, or an error saying why vswitchd could not set it up
        (such a port is removed again). A port of the same name that already exists
        for the same purpose (external_ids) is taken as it is; one for something
        else is an error. Raises OVSDBError when the transaction cannot be made or applied.
        """
        outcome: dict[str, int | FabricError] = {}
        build = functools.partial(self._put_ports, bridge, ports, outcome)
        cfg = await self._session.transact(build, f"creating {len(ports)} port(s) on bridge {bridge}")
        try:
            await self._applied(cfg, f"{len(ports)} new port(s)")
        except OVSDBError:  # vswitchd is not acting on the database: take the ports back rather than leave them
            with contextlib.suppress(FabricError):
                await self.del_ports(bridge, [p.name for p in ports if p.name not in outcome], wait=False)
            raise
        waiting = [p.name for p in ports if p.name not in outcome]
        try:
            await self._session.until(
                functools.partial(self._settled, *waiting), "ovs-vswitchd to number the new ports"
            )
        except OVSDBError as e:
            for n in waiting:
                if not self._settled(n):
                    outcome[n] = OVSDBError(f"port {n}: {e}")
        failed = self._numbered(waiting, outcome)
        if failed:  # roll back what vswitchd could not use: nothing half-created stays behind
            try:
                await self.del_ports(bridge, failed)
            except FabricError as e:
                log.warning("cannot remove failed ports", ports=",".join(failed), err=e)
        return [outcome[p.name] for p in ports]

    def _put_ports(self, bridge: str, ports: list[NewPort], outcome: dict[str, int | FabricError], txn: Any) -> bool:
        """In `txn`: add the ports not there yet; one that exists for something else gets its error in `outcome`."""
        br = self._bridge(bridge)
        if br is None:
            raise OVSDBError(f"bridge {bridge} does not exist (was it deleted under the agent?)")
        existing = self._interfaces()
        changed = False
        for p in ports:
            old = existing.get(p.name)
            if old is not None:
                if dict(old.external_ids) != dict(p.external_ids):
                    outcome[p.name] = FabricError(
                        f"a port named {p.name} already exists for something else "
                        f"(external_ids {dict(old.external_ids)})"
                    )
                continue  # created earlier (a retried call): wait for it like a new one
            br.addvalue("ports", self._new_port(txn, p.name, "internal", mac=p.mac,
                                                external_ids=p.external_ids).uuid)  # fmt: skip
            changed = True
        return changed

    def _numbered(self, waiting: list[str], outcome: dict[str, int | FabricError]) -> list[str]:
        """Fill `outcome` for the `waiting` ports from what vswitchd made of them; the ones that failed."""
        failed: list[str] = []
        ifaces = self._interfaces()
        for n in waiting:
            if n in outcome:
                failed.append(n)
                continue
            iface = ifaces[n]
            ofport, err = _ofport(iface), _error(iface)
            if ofport > 0 and not err:
                outcome[n] = ofport
            else:
                outcome[n] = FabricError(f"ovs-vswitchd could not set up port {n}: {err or f'ofport {ofport}'}")
                failed.append(n)
        return failed

    async def del_ports(self, bridge: str, names: Iterable[str], *, wait: bool = True) -> None:
        """Remove ports (missing ones are fine) in one transaction and wait until vswitchd has let go of them."""
        wanted = set(names)

        def build(txn: Any) -> bool:
            br = self._bridge(bridge)
            if br is None:
                return False
            changed = False
            for p in list(br.ports):
                if p.name in wanted:
                    br.delvalue("ports", p.uuid)
                    for iface in list(p.interfaces):
                        iface.delete()
                    p.delete()
                    changed = True
            return changed

        cfg = await self._session.transact(build, f"deleting {len(wanted)} port(s) from bridge {bridge}")
        if wait:
            await self._applied(cfg, f"the removal of {len(wanted)} port(s)")
