"""Releasing an NA's locks only when no status can name them, so an address is never given twice.

IPAM's view of an NA can be stale (another IPAM may just have written its
status), and a status naming a deleted lock would let its address go twice. So
locks the NA's *current* status might name are released only after IPAM wrote
a status that does not name them (`confirmed`), or after a live read shows it
does not. A deleted NA's locks are first left to the apiserver's garbage
collector (`GC_GRACE`); what is still there after that is released if a live
read proves its owner dead (UIDs are never reused).
"""

from __future__ import annotations

from kos.api.errors import NotFound
from kos.api.types import IPLock, NetworkAttachment
from kos.client.api import API
from kos.client.controller import Retry, RetrySoon
from kos.controllers.iplocks import LockClient, controlling_owner

GC_GRACE = 2.0
"""Seconds IPAM leaves a deleted NA's locks to the apiserver's garbage collector before releasing them itself."""


class LockReleaser:
    """Releases locks through `locks` once it is safe (see the module docstring)."""

    def __init__(self, api: API, locks: LockClient) -> None:
        self.api = api
        self.locks = locks
        self._dead_seen: set[str] = set()
        """Gone NAs whose locks were left to the garbage collector once already."""

    async def release_dead_owners(self, key: str, locks: list[IPLock]) -> None:
        """The NA is gone from our cache: release the locks of incarnations that are certainly dead.

        A lock's owner existed before the lock did; if a consistent read now finds no NA of that name, or one with
        another UID, that owner is gone for good (UIDs are never reused). A new incarnation's locks are kept.
        """
        if not locks:
            self._dead_seen.discard(key)
            return
        if key not in self._dead_seen:
            # The apiserver's garbage collector deletes the locks of a deleted NA at once; come back later and
            # release only what is still left (saves a GET and a DELETE per deleted NA).
            self._dead_seen.add(key)
            raise RetrySoon(f"{key} is gone; its locks are left to the garbage collector for now", GC_GRACE)
        self._dead_seen.discard(key)
        ns, _, name = key.partition("/")
        try:
            live_uid = (await self.api.get(NetworkAttachment, ns, name)).metadata.uid
        except NotFound:
            live_uid = ""
        for lock in locks:
            owner = controlling_owner(lock)
            if owner is not None and owner.uid != live_uid:
                await self.locks.release(key, lock)

    async def release_after_status(self, key: str, na: NetworkAttachment, locks: list[IPLock], confirmed: bool) -> None:
        """Release `locks` once the status is known not to name them (`confirmed`: we just wrote that status)."""
        if not locks:
            return
        if not confirmed:
            ns, _, name = key.partition("/")
            try:
                live = await self.api.get(NetworkAttachment, ns, name)
            except NotFound:
                return  # gone: the NA's deletion brings us back
            if live.metadata.uid != na.metadata.uid or live.status.lock_uid in {lk.metadata.uid for lk in locks}:
                raise Retry(f"the status of {key} changed under us")
        for lock in locks:
            await self.locks.release(key, lock)
