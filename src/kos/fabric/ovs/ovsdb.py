"""OVSDB in this process: the `ovs` package's IDL, driven by the asyncio event loop.

Why in process rather than `ovs-vsctl`: a port costs ~2.6 ms in one transaction
instead of ~6.4 ms per `ovs-vsctl` process, many ports go into one transaction
for little more, transactions are all-or-nothing, and the IDL's replica shows
what ovs-vswitchd made of each port (`ofport`, `error`) without another
process (ovs-datapath.md §3–4). `ovs-vsctl` exits 0 even when vswitchd could
not set a port up; here a port counts as created only once vswitchd gave it an
OpenFlow port number.

Why no thread: the IDL is a non-blocking state machine. `Idl.run()` consumes
what has arrived and `Idl.wait(poller)` says what it waits for (sockets to read
or write, a timer). `_Waits` stands in for `ovs.poller.Poller` and turns that
into event-loop readers, writers and a timeout, so the IDL runs on the loop
like any other protocol and every operation here is a coroutine.

What waits for what: a change that ovs-vswitchd must act on bumps
`Open_vSwitch.next_cfg` in the same transaction; vswitchd copies it to
`cur_cfg` once it has reconfigured, in the same transaction that writes the
ports' `ofport` and `error` (this is what `ovs-vsctl` waits for by default).

Everything the `ovs` package returns is untyped; it stays inside this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ovs.db.idl
import ovs.poller
import ovs.timeval

from kos.fabric.interface import FabricError
from kos.util.log import get_logger

log = get_logger(__name__)

DB = "Open_vSwitch"
COLUMNS = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg"],
    "Bridge": ["name", "ports", "datapath_type", "fail_mode", "protocols"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type", "ofport", "error", "options", "mac", "external_ids"],
}
PROTOCOLS = ["OpenFlow10", "OpenFlow13", "OpenFlow14", "OpenFlow15"]
"""OpenFlow 1.3+ for bundles (`-O OpenFlow13 --bundle`); 1.0 so a plain `ovs-ofctl dump-flows kos` still works."""


class OVSDBError(FabricError):
    """OVSDB could not carry out a change (unreachable, vswitchd not applying it); the message says why."""


class OVSDBRefused(OVSDBError):
    """The database refused a transaction (e.g. a constraint): something in the transaction is at fault."""


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


def _committed(txn: Any, incomplete: Any) -> bool:
    return bool(txn.commit() != incomplete)


def _error(iface: Any) -> str:
    v = iface.error
    return str(v[0]) if v else ""


class _Waits:
    """What the IDL asked to wait for: the part of `ovs.poller.Poller` the IDL calls."""

    def __init__(self) -> None:
        self.read: set[int] = set()
        self.write: set[int] = set()
        self.timeout_ms = -1.0

    def fd_wait(self, fd: Any, events: int) -> None:
        n = fd if isinstance(fd, int) else fd.fileno()
        if events & ovs.poller.POLLIN:
            self.read.add(n)
        if events & ovs.poller.POLLOUT:
            self.write.add(n)

    def timer_wait(self, msec: float) -> None:
        if msec <= 0:
            self.timeout_ms = 0
        elif self.timeout_ms < 0 or msec < self.timeout_ms:
            self.timeout_ms = msec

    def timer_wait_until(self, msec: float) -> None:
        self.timer_wait(msec - ovs.timeval.msec())

    def immediate_wake(self) -> None:
        self.timeout_ms = 0


@dataclasses.dataclass(slots=True)
class _Waiter:
    ready: Callable[[], bool]
    future: asyncio.Future[None]
    deadline: float


async def fetch_schema(remote: str, timeout: float) -> dict[str, Any]:
    """The server's Open_vSwitch schema (`get_schema`), so no schema file has to be installed beside the agent."""
    kind, _, where = remote.partition(":")
    try:
        async with asyncio.timeout(timeout):
            if kind == "unix":
                reader, writer = await asyncio.open_unix_connection(where)
            elif kind == "tcp":
                host, _, port = where.rpartition(":")
                reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
            else:
                raise OVSDBError(f"OVSDB remote {remote!r}: only unix:PATH and tcp:HOST:PORT are supported")
            try:
                writer.write(json.dumps({"id": 0, "method": "get_schema", "params": [DB]}).encode())
                buf = ""
                decoder = json.JSONDecoder()
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise OVSDBError(f"OVSDB at {remote} closed the connection before sending its schema")
                    buf += chunk.decode()
                    try:
                        msg, _ = decoder.raw_decode(buf.lstrip())
                    except json.JSONDecodeError:
                        continue
                    if not isinstance(msg, dict) or msg.get("id") != 0:
                        continue  # a notification (e.g. echo) before the reply
                    if msg.get("error"):
                        raise OVSDBError(f"OVSDB at {remote} has no {DB} database: {msg['error']}")
                    schema: dict[str, Any] = msg["result"]
                    return schema
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise OVSDBError(f"OVSDB at {remote} did not answer within {timeout:g}s") from None
    except OSError as e:
        raise OVSDBError(f"cannot connect to OVSDB at {remote}: {e.strerror or e} (is ovsdb-server running?)") from None


class OVSDB:
    """A replica of the Open_vSwitch database's bridges, ports and interfaces, and transactions on it."""

    def __init__(self, remote: str, idl: Any, *, timeout: float) -> None:
        self.remote = remote
        self.timeout = timeout
        self._idl = idl
        self._waiters: list[_Waiter] = []
        self._wake: asyncio.Future[None] | None = None
        self._closed = False
        self._pump_task: asyncio.Task[None] | None = None
        self.transactions = 0

    @classmethod
    async def connect(cls, remote: str, *, timeout: float = 10.0) -> OVSDB:
        schema = await fetch_schema(remote, timeout)
        helper = ovs.db.idl.SchemaHelper(schema_json=schema)
        for table, columns in COLUMNS.items():
            helper.register_columns(table, columns)
        db = cls(remote, ovs.db.idl.Idl(remote, helper), timeout=timeout)
        db._pump_task = asyncio.create_task(db._pump(), name="ovsdb-idl")
        try:
            await db._until(db._synced, f"the initial copy of OVSDB at {remote}")
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        self._closed = True
        self._poke()
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        for w in self._waiters:
            if not w.future.done():
                w.future.set_exception(OVSDBError("the OVSDB connection was closed"))
        self._waiters = []
        self._idl.close()

    # --- the event-loop pump -----------------------------------------------------------------

    def _changed_since(self, seqno: int) -> bool:
        return bool(self._idl.change_seqno != seqno) or not self._synced()

    def _synced(self) -> bool:
        idl = self._idl
        return bool(idl.has_ever_connected()) and idl.state == ovs.db.idl.Idl.IDL_S_MONITORING

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._closed:
                self._idl.run()
                self._service(loop.time())
                waits = _Waits()
                self._idl.wait(waits)
                timeout = None if waits.timeout_ms < 0 else waits.timeout_ms / 1000
                if self._waiters:
                    first = min(w.deadline for w in self._waiters) - loop.time()
                    timeout = first if timeout is None else min(timeout, first)
                if timeout is not None and timeout <= 0:
                    await asyncio.sleep(0)
                    continue
                self._wake = loop.create_future()
                for fd in waits.read:
                    loop.add_reader(fd, self._poke)
                for fd in waits.write:
                    loop.add_writer(fd, self._poke)
                try:
                    await asyncio.wait([self._wake], timeout=timeout)
                finally:
                    for fd in waits.read:
                        loop.remove_reader(fd)
                    for fd in waits.write:
                        loop.remove_writer(fd)
                    self._wake = None
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug here must not leave callers waiting forever
            log.exception("OVSDB client failed", remote=self.remote)
            self._closed = True
            for w in self._waiters:
                if not w.future.done():
                    w.future.set_exception(OVSDBError(f"the OVSDB client failed: {e!r}"))
            self._waiters = []

    def _service(self, now: float) -> None:
        keep: list[_Waiter] = []
        for w in self._waiters:
            if w.future.done():
                continue
            if w.ready():
                w.future.set_result(None)
            elif now >= w.deadline:
                w.future.set_exception(TimeoutError())
            else:
                keep.append(w)
        self._waiters = keep

    async def _until(self, ready: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        """Wait until `ready()` holds after the IDL has processed what arrived; OVSDBError after the timeout."""
        if ready():
            return
        if self._closed:
            raise OVSDBError("the OVSDB connection was closed (or its client failed: see the log)")
        loop = asyncio.get_running_loop()
        t = self.timeout if timeout is None else timeout
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(_Waiter(ready, fut, loop.time() + t))
        self._poke()
        try:
            await fut
        except TimeoutError:
            raise OVSDBError(f"timed out after {t:g}s waiting for {what}") from None

    # --- reading the replica -----------------------------------------------------------------

    def _root(self) -> Any:
        rows = list(self._idl.tables[DB].rows.values())
        return rows[0] if rows else None

    def _bridge(self, name: str) -> Any:
        for b in self._idl.tables["Bridge"].rows.values():
            if b.name == name:
                return b
        return None

    def _cur_cfg(self) -> int:
        root = self._root()
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

    async def _transact(self, build: Callable[[Any], bool], what: str) -> int | None:
        """Build and commit one transaction; `build(txn)` returns whether vswitchd must act on it.

        Returns the `next_cfg` to wait for (None when nothing changed or vswitchd need not act).
        A conflict with a concurrent writer (TRY_AGAIN) is retried on the fresh replica.
        """
        txn_class = ovs.db.idl.Transaction
        incomplete = txn_class.INCOMPLETE
        for _ in range(20):
            await self._until(self._synced, f"a connection to OVSDB at {self.remote}")
            seqno = self._idl.change_seqno
            txn = txn_class(self._idl)
            try:
                bump = build(txn)
                if bump:
                    self._root().increment("next_cfg")
            except BaseException:
                txn.abort()
                raise
            txn.commit()
            self.transactions += 1
            self._poke()
            await self._until(functools.partial(_committed, txn, incomplete), what)
            status = txn.commit()
            if status == txn_class.SUCCESS:
                return int(txn.get_increment_new_value()) if bump else None
            if status == txn_class.UNCHANGED:
                return None
            if status == txn_class.TRY_AGAIN:
                await self._until(functools.partial(self._changed_since, seqno), what)
                continue
            raise OVSDBRefused(f"OVSDB refused {what}: {txn.get_error()}")
        raise OVSDBError(f"OVSDB kept conflicting with other writers during {what}")

    async def _applied(self, cfg: int | None, what: str) -> None:
        if cfg is not None:
            await self._until(
                lambda: self._cur_cfg() >= cfg,
                f"ovs-vswitchd to apply {what} (is ovs-vswitchd running and connected to {self.remote}?)",
            )

    async def ensure_bridge(
        self, bridge: str, *, datapath_type: str, vtep: str, vtep_options: Mapping[str, str]
    ) -> int:
        """Make the bridge and its VXLAN port exist as configured (idempotent); the VXLAN port's ofport."""

        def build(txn: Any) -> bool:
            root = self._root()
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
            changed = False
            if (br.datapath_type or "system") != datapath_type:  # OVS reads "" as system
                raise OVSDBError(f"bridge {bridge} exists with datapath_type {br.datapath_type or 'system'!r}, not "
                                 f"{datapath_type!r}: changing it would recreate the datapath and cut traffic; pass "
                                 f"the bridge's datapath, or delete the bridge to change it")  # fmt: skip
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

        cfg = await self._transact(build, f"setting up bridge {bridge}")
        await self._applied(cfg, f"bridge {bridge}")
        what = f"ovs-vswitchd to set up port {vtep} of bridge {bridge}"
        await self._until(lambda: self._settled(vtep), what)
        iface = self._interfaces().get(vtep)
        if iface is None or _ofport(iface) <= 0:
            err = _error(iface) if iface is not None else "the interface is missing"
            raise OVSDBError(f"ovs-vswitchd could not set up port {vtep} of bridge {bridge}: {err or 'no ofport'}")
        return _ofport(iface)

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
        else is an error.
        """
        outcome: dict[str, int | FabricError] = {}

        def build(txn: Any) -> bool:
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

        cfg = await self._transact(build, f"creating {len(ports)} port(s) on bridge {bridge}")
        try:
            await self._applied(cfg, f"{len(ports)} new port(s)")
        except OVSDBError:  # vswitchd is not acting on the database: take the ports back rather than leave them
            with contextlib.suppress(FabricError):
                await self.del_ports(bridge, [p.name for p in ports if p.name not in outcome], wait=False)
            raise
        waiting = [p.name for p in ports if p.name not in outcome]
        try:
            await self._until(functools.partial(self._settled, *waiting), "ovs-vswitchd to number the new ports")
        except OVSDBError as e:
            for n in waiting:
                if not self._settled(n):
                    outcome[n] = OVSDBError(f"port {n}: {e}")
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
        if failed:  # roll back what vswitchd could not use: nothing half-created stays behind
            try:
                await self.del_ports(bridge, failed)
            except FabricError as e:
                log.warning("cannot remove failed ports", ports=",".join(failed), err=e)
        return [outcome[p.name] for p in ports]

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

        cfg = await self._transact(build, f"deleting {len(wanted)} port(s) from bridge {bridge}")
        if wait:
            await self._applied(cfg, f"the removal of {len(wanted)} port(s)")
