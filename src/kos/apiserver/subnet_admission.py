"""Subnet admission: a create-time conflict check against the up-to-date cache (ARCHITECTURE §4).

Subnets with the same VNI must be in one namespace and have disjoint CIDRs. Creates are serialised
within this server, and the check runs after the cache has caught up with the store, so two
conflicting subnets are never both admitted by one server; across servers the subnet validator is
the authority (it marks the later one invalid). Beside the strategies, as a kind's admission plugin
is in kube-apiserver; the registry calls it for Subnets when `--check-subnet-conflicts` is on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kos.api import cidr, errors, field
from kos.api.field import FieldError
from kos.api.resources import SUBNETS
from kos.apiserver.cache import Cacher, Entry
from kos.storage.interface import KeyExists

WRITE_VISIBLE_TIMEOUT = 10.0
"""Seconds an admitted create waits for the cache to apply it, so the next admission sees it."""


class SubnetAdmission:
    """Admits Subnet creates one at a time, each against every subnet of its VNI."""

    def __init__(self, cacher: Cacher) -> None:
        self.cacher = cacher
        self.lock = asyncio.Lock()

    async def create(self, obj: Any, write: Callable[[Any], Awaitable[Entry]]) -> Entry:
        """Admit `obj` (a prepared, valid Subnet) and `write` it, waiting until the cache holds the write.

        Raises KeyExists when the subnet exists, Invalid (422) naming each conflict, and what `write` raises.
        """
        async with self.lock:
            await self.cacher.sync()
            meta = obj.metadata
            if self.cacher.caches[SUBNETS.plural].get(f"{meta.namespace}/{meta.name}") is not None:
                raise KeyExists(meta.name)
            errs = self.conflicts(obj)
            if errs:
                raise errors.invalid(SUBNETS.kind, meta.name, errs)
            entry = await write(obj)
            await self.cacher.wait_for(entry.rev, timeout=WRITE_VISIBLE_TIMEOUT)
            return entry

    def conflicts(self, obj: Any) -> list[FieldError]:
        """What `obj` conflicts with among the cached subnets of its VNI (none when its CIDR does not parse)."""
        try:
            mine = cidr.parse_block(obj.spec.ipv4)
        except cidr.CIDRError:
            return []
        cache = self.cacher.caches[SUBNETS.plural]
        out: list[FieldError] = []
        for key in sorted(cache.index["spec.vni"].get(str(obj.spec.vni), ())):
            other = cache.items[key].obj
            ref = f"{other.metadata.namespace}/{other.metadata.name}"
            if ref == f"{obj.metadata.namespace}/{obj.metadata.name}":
                continue
            if other.metadata.namespace != obj.metadata.namespace:
                out.append(field.forbidden(
                    "spec.vni",
                    f"subnets with same VNI must be within same namespace, but {ref} has the same VNI and a"
                    " different namespace",
                ))  # fmt: skip
            try:
                theirs = cidr.parse_block(other.spec.ipv4)
            except cidr.CIDRError:
                continue
            if mine.overlaps(theirs):
                out.append(field.forbidden(
                    "spec.ipv4",
                    f"subnets with same VNI must have disjoint CIDRs, but CIDR overlaps with {ref}'s"
                    f" ({other.spec.ipv4})",
                ))  # fmt: skip
        return out
