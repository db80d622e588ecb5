"""Invariant 1 at every revision: follow the NetworkAttachment stream and catch any moment two show one address.

A snapshot shows one revision; a deletion path that frees an address too early
(Whereabouts #207, AWS VPC CNI #1091) may show it twice for only a few
revisions. A watch delivers every change of every attachment, one revision per
event, in order, so checking after each event checks every revision at which an
attachment changed — which are all the revisions at which the answer can change.
`kos verify --watch` and the deletion-path tests use this.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine, Iterable
from typing import Any

from kos.api.types import NetworkAttachment
from kos.client.rest import Client
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

log = get_logger(__name__)

Address = tuple[int, str]
"""(VNI, IPv4 address)."""


def _ref(na: NetworkAttachment) -> str:
    return f"{na.metadata.namespace}/{na.metadata.name}"


class AddressHistory:
    """Who shows which address, revision by revision; every revision at which two attachments show one."""

    def __init__(self, nas: Iterable[NetworkAttachment] = (), revision: str = "") -> None:
        self.shown: dict[str, Address] = {}
        self.holders: dict[Address, set[str]] = collections.defaultdict(set)
        self.violations: list[str] = []
        self.events = 0
        self.revision = revision
        for na in nas:
            self._set(_ref(na), na)
        for addr, who in self.holders.items():
            if len(who) > 1:
                self._report(revision, addr, who)

    def _set(self, ref: str, na: NetworkAttachment | None) -> Address | None:
        old = self.shown.pop(ref, None)
        if old is not None:
            self.holders[old].discard(ref)
            if not self.holders[old]:
                del self.holders[old]
        if na is None or not na.status.ipv4:
            return None
        addr = (na.status.address_vni, na.status.ipv4)
        self.shown[ref] = addr
        self.holders[addr].add(ref)
        return addr

    def _report(self, revision: str, addr: Address, who: set[str]) -> None:
        self.violations.append(
            f"address: at revision {revision} {addr[1]} in VNI {addr[0]} is shown by {len(who)} NAs:"
            f" {', '.join(sorted(who))}"
        )

    def apply(self, event_type: str, na: NetworkAttachment) -> None:
        """One watch event (ADDED, MODIFIED or DELETED) at `na.metadata.resourceVersion`."""
        self.events += 1
        self.revision = na.metadata.resource_version
        addr = self._set(_ref(na), None if event_type == "DELETED" else na)
        if addr is not None and len(self.holders[addr]) > 1:
            self._report(self.revision, addr, self.holders[addr])


async def follow(
    client: Client, history: AddressHistory, seconds: float | None = None, *, clock: Clock = REAL_CLOCK
) -> None:
    """Feed `history` with every attachment change after its revision, for `seconds` of `clock` (None: until
    cancelled). Logs "following attachments" (info) as it starts: every change after `rv` is followed from
    then on, however late the watch opens."""

    async def run() -> None:
        while True:  # the server ends a watch after its timeout: resume from the last revision seen
            async for ev in client.watch(NetworkAttachment, resource_version=history.revision, allow_bookmarks=True):
                if ev.object is not None:
                    history.apply(ev.type, ev.object)
                elif ev.resource_version:
                    history.revision = ev.resource_version

    log.info("following attachments", rv=history.revision, seconds=seconds)
    if seconds is None:
        await run()
        return
    await run_for(clock, seconds, run())


async def run_for(clock: Clock, seconds: float, coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` until it ends or `seconds` of `clock` pass (then cancel it and return)."""
    task = asyncio.ensure_future(coro)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = clock.call_later(seconds, expire)
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if not expired or (current is not None and current.cancelling()):
            raise  # cancelled from outside, not by the timer
    finally:
        timer.cancel()
        task.cancel()
