"""The `ovs` package's IDL driven by the asyncio event loop: the pump, waits on the replica, transactions.

Why no thread: the IDL is a non-blocking state machine. `Idl.run()` consumes
what has arrived and `Idl.wait(poller)` says what it waits for (sockets to read
or write, a timer). `_Waits` stands in for `ovs.poller.Poller` and turns that
into event-loop readers, writers and a timeout, so the IDL runs on the loop
like any other protocol and every wait here is a coroutine.

This module knows how to keep a replica and commit to it; what the rows mean
(bridges, ports, interfaces) is `ovsdb.py`'s. Everything the `ovs` package
returns is untyped; it stays inside these two modules.
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


class OVSDBError(FabricError):
    """OVSDB could not carry out a change (unreachable, vswitchd not applying it); the message says why."""


class OVSDBRefused(OVSDBError):
    """The database refused a transaction (e.g. a constraint): something in the transaction is at fault."""


def _committed(txn: Any, incomplete: Any) -> bool:
    return bool(txn.commit() != incomplete)


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


class IdlSession:
    """One IDL connection on the event loop: its replica (`idl`), waits for conditions on it, and transactions."""

    def __init__(self, remote: str, idl: Any, *, timeout: float) -> None:
        self.remote = remote
        self.timeout = timeout
        """Seconds any one wait (`until`) may take unless told otherwise."""
        self.idl = idl
        self._waiters: list[_Waiter] = []
        self._wake: asyncio.Future[None] | None = None
        self._closed = False
        self._pump_task: asyncio.Task[None] | None = None
        self.transactions = 0
        """Transactions committed so far (retries included)."""

    @classmethod
    async def connect(cls, remote: str, columns: Mapping[str, Iterable[str]], *, timeout: float) -> IdlSession:
        """Connect and wait for the initial copy of `columns` (table → column names); OVSDBError on failure."""
        schema = await fetch_schema(remote, timeout)
        helper = ovs.db.idl.SchemaHelper(schema_json=schema)
        for table, names in columns.items():
            helper.register_columns(table, list(names))
        s = cls(remote, ovs.db.idl.Idl(remote, helper), timeout=timeout)
        s._pump_task = asyncio.create_task(s._pump(), name="ovsdb-idl")
        try:
            await s.until(s.synced, f"the initial copy of OVSDB at {remote}")
        except BaseException:
            await s.close()
            raise
        return s

    async def close(self) -> None:
        """Stop the pump, fail every wait with OVSDBError and close the connection."""
        self._closed = True
        self._poke()
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        for w in self._waiters:
            if not w.future.done():
                w.future.set_exception(OVSDBError("the OVSDB connection was closed"))
        self._waiters = []
        self.idl.close()

    def root(self) -> Any:
        """The database's single `Open_vSwitch` row (None before one exists)."""
        rows = list(self.idl.tables[DB].rows.values())
        return rows[0] if rows else None

    # --- the event-loop pump -----------------------------------------------------------------

    def _changed_since(self, seqno: int) -> bool:
        return bool(self.idl.change_seqno != seqno) or not self.synced()

    def synced(self) -> bool:
        """Whether the replica is connected and up to date (monitoring)."""
        idl = self.idl
        return bool(idl.has_ever_connected()) and idl.state == ovs.db.idl.Idl.IDL_S_MONITORING

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._closed:
                self.idl.run()
                self._service(loop.time())
                waits = _Waits()
                self.idl.wait(waits)
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

    async def until(self, ready: Callable[[], bool], what: str, timeout: float | None = None) -> None:
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

    # --- transactions ------------------------------------------------------------------------

    async def transact(self, build: Callable[[Any], bool], what: str) -> int | None:
        """Build and commit one transaction; `build(txn)` returns whether vswitchd must act on it.

        Returns the `next_cfg` to wait for (None when nothing changed or vswitchd need not act).
        A conflict with a concurrent writer (TRY_AGAIN) is retried on the fresh replica.
        Raises OVSDBRefused when the database refuses it, OVSDBError when it cannot be committed.
        """
        txn_class = ovs.db.idl.Transaction
        incomplete = txn_class.INCOMPLETE
        for _ in range(20):
            await self.until(self.synced, f"a connection to OVSDB at {self.remote}")
            seqno = self.idl.change_seqno
            txn = txn_class(self.idl)
            try:
                bump = build(txn)
                if bump:
                    self.root().increment("next_cfg")
            except BaseException:
                txn.abort()
                raise
            txn.commit()
            self.transactions += 1
            self._poke()
            await self.until(functools.partial(_committed, txn, incomplete), what)
            status = txn.commit()
            if status == txn_class.SUCCESS:
                return int(txn.get_increment_new_value()) if bump else None
            if status == txn_class.UNCHANGED:
                return None
            if status == txn_class.TRY_AGAIN:
                await self.until(functools.partial(self._changed_since, seqno), what)
                continue
            raise OVSDBRefused(f"OVSDB refused {what}: {txn.get_error()}")
        raise OVSDBError(f"OVSDB kept conflicting with other writers during {what}")
