"""The subnet validator: decides `status.validated` for every Subnet (reference §3).

Invariant it keeps (ARCHITECTURE §8, 2): validated subnets with the same VNI are
in one namespace and have disjoint CIDRs — even with two validators running at
once. The apiserver's create-time check is only best-effort (caches lag, several
servers); the validator is the authority:

- it examines a subnet with a *live*, consistent list of every subnet with the
  same VNI (never its own cache), so if a conflicting subnet exists at all, the
  later of the two sees the earlier one;
- once validated, a subnet is never re-examined (its verdict cannot flip);
- a subnet that failed because of rivals records itself as their rival (the
  conflicts cache, keyed by name and checked against the rival's UID), so it is
  re-examined when a rival is deleted;
- after its own status write it ignores its stale cached copy until the informer
  delivers the update (staleness suppression).
"""

from __future__ import annotations

import dataclasses
import time

import msgspec

from kos.api import cidr
from kos.api.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    StatusError,
    Unauthorized,
    UnsupportedMediaType,
)
from kos.api.types import Subnet, SubnetStatus
from kos.client.api import API
from kos.client.controller import Controller, Retry
from kos.client.informer import Informer
from kos.client.workqueue import WorkQueue
from kos.controllers.metrics import SubnetValidatorMetrics, ok
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger
from kos.util.timing import ERR, Timed

log = get_logger(__name__)

MALFORMED_REQUEST = (
    Unauthorized,
    BadRequest,
    Forbidden,
    NotAcceptable,
    UnsupportedMediaType,
    MethodNotAllowed,
    Invalid,
)
"""Errors that retrying cannot fix: logged and dropped (reference §3.3)."""


def key_of(sn: Subnet) -> str:
    return f"{sn.metadata.namespace}/{sn.metadata.name}"


@dataclasses.dataclass(slots=True)
class ConflictEntry:
    owner_uid: str
    rivals: set[str] = dataclasses.field(default_factory=set)


class SubnetValidator(Controller):
    name = "subnet-validator"

    def __init__(
        self,
        api: API,
        subnets: Informer[Subnet],
        queue: WorkQueue[str],
        metrics: SubnetValidatorMetrics,
        *,
        workers: int = 2,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        super().__init__(queue, [subnets], workers)
        self.api = api
        self.subnets = subnets
        self.metrics = metrics
        self.clock = clock
        self.conflicts: dict[str, ConflictEntry] = {}
        self.stale_rvs: dict[str, str] = {}
        subnets.add_handlers(on_add=self._on_add, on_update=self._on_update, on_delete=self._on_delete)

    # --- event handlers: only enqueue --------------------------------------------------------

    def _on_add(self, sn: Subnet) -> None:
        self.queue.add(key_of(sn))

    def _on_update(self, old: Subnet, new: Subnet) -> None:
        key = key_of(new)
        stale = self.stale_rvs.get(key)
        if old.metadata.uid != new.metadata.uid or (stale is not None and stale != new.metadata.resource_version):
            self.queue.add(key)

    def _on_delete(self, sn: Subnet) -> None:
        self.queue.add(key_of(sn))

    # --- sync --------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        sn = self.subnets.lister.get(ns, name)
        if sn is None:
            self.stale_rvs.pop(key, None)
            entry = self.conflicts.pop(key, None)
            if entry is not None:
                for rival in entry.rivals:
                    self.queue.add(rival)
            return
        try:
            mine = cidr.parse_block(sn.spec.ipv4)
        except cidr.CIDRError:
            log.error("subnet has a malformed CIDR; should never happen", key=key, cidr=sn.spec.ipv4)
            return
        rv = sn.metadata.resource_version
        if self.stale_rvs.get(key) == rv:
            self.metrics.stale_suppression.inc()
            return
        self.stale_rvs.pop(key, None)
        entry = self.conflicts.get(key)
        if entry is None:
            self.conflicts[key] = ConflictEntry(sn.metadata.uid)
        elif entry.owner_uid != sn.metadata.uid:  # deleted and recreated under the same name
            old_rivals = entry.rivals
            self.conflicts[key] = ConflictEntry(sn.metadata.uid)
            for rival in old_rivals:
                self.queue.add(rival)
        if sn.status.validated:
            return
        errors = await self._rivals(sn, mine)
        if errors is None:
            return
        validated = not errors
        if sn.status.validated == validated and list(sn.status.errors) == errors:
            self.metrics.duplicate_work.inc()
            return
        await self._write(sn, validated, errors)

    async def _rivals(self, sn: Subnet, mine: cidr.Block) -> list[str] | None:
        """The sorted complaints about `sn` from a live list of its VNI, or None to drop the item."""
        key = key_of(sn)
        refused: StatusError | None = None
        with Timed(self.metrics.live_list_latency) as t:
            try:
                live, _ = await self.api.list(Subnet, None, field_selector=f"spec.vni={sn.spec.vni}")
            except MALFORMED_REQUEST as e:
                t.outcome, refused = ERR, e
        if refused is not None:
            log.error("live list refused", key=key, error=refused)
            return None
        self.metrics.live_list_size.observe(len(live))
        errors: list[str] = []
        for r in live:
            if r.metadata.uid == sn.metadata.uid:
                continue
            try:
                theirs = cidr.parse_block(r.spec.ipv4)
            except cidr.CIDRError:
                continue
            ref = key_of(r)
            overlap = mine.overlaps(theirs)
            other_ns = r.metadata.namespace != sn.metadata.namespace
            if not overlap and not other_ns:
                continue
            if overlap:
                errors.append(f"CIDR overlaps with {ref}'s ({r.spec.ipv4})")
            if other_ns:
                errors.append(f"same VNI but different namespace wrt {ref}")
            rival_entry = self.conflicts.get(ref)
            if rival_entry is None:
                self.metrics.cache_mismatch.labels("missing cache").inc()
                raise Retry(f"rival {ref} is not in the conflicts cache yet")
            if rival_entry.owner_uid != r.metadata.uid:
                self.metrics.cache_mismatch.labels("cache owner").inc()
                raise Retry(f"rival {ref} in the conflicts cache is another incarnation")
            rival_entry.rivals.add(key)
        errors.sort()
        return errors

    async def _write(self, sn: Subnet, validated: bool, errors: list[str]) -> None:
        key = key_of(sn)
        unexamined = not sn.status.validated and not sn.status.errors
        new = msgspec.structs.replace(sn, status=SubnetStatus(validated=validated, errors=tuple(errors)))
        # timed by hand, not with kos.util.timing.Timed: the outcome is this histogram's *first* label (the
        # original's order), and a refusal other than those below is not observed, as in the original
        t0 = time.perf_counter()
        try:
            await self.api.update_status(new)
        except (NotFound, Conflict) as e:
            self.metrics.update_latency.labels("err", ok(bool(errors))).observe(time.perf_counter() - t0)
            raise Retry(str(e)) from e
        except MALFORMED_REQUEST as e:
            self.metrics.update_latency.labels("err", ok(bool(errors))).observe(time.perf_counter() - t0)
            log.error("status update refused", key=key, error=e)
            return
        done = time.perf_counter()
        self.metrics.update_latency.labels("ok", ok(bool(errors))).observe(done - t0)
        self.stale_rvs[key] = sn.metadata.resource_version
        if unexamined:
            written = sn.extended_metadata.write_time("spec") or sn.metadata.creation_timestamp
            if written is not None:
                self.metrics.create_to_validated.labels(ok(bool(errors))).observe(
                    (self.clock.now() - written).total_seconds()
                )
        if validated:
            log.info("subnet validated", key=key)
        else:
            log.warning("subnet failed validation: found rival subnets", key=key, errors=errors)
