"""Writing IPAM's part of an NA's status: its address, the lock behind it, the subnet's time, IPAM's errors.

The status is written only after the lock exists, so every address in a status
is backed by a lock the NA controls; a write that would change nothing is not
sent. After writing an address IPAM records the write ("anticipation", in
`AttachmentData`) so that, until its caches show it, it neither picks another
address nor releases the lock it named.
"""

from __future__ import annotations

import datetime

import msgspec
from prometheus_client import Histogram

from kos.api.errors import NotFound, StatusError
from kos.api.types import SECTION_ADDRESS, SECTION_SPEC, IPLock, NetworkAttachment, NetworkAttachmentErrors
from kos.client.api import API
from kos.client.controller import Retry
from kos.controllers.lock_analysis import Analysis, AttachmentData
from kos.controllers.metrics import IPAMMetrics, ok
from kos.util.log import get_logger
from kos.util.timing import Timed

log = get_logger(__name__)


def observe_since_client_write(
    hist: Histogram, na: NetworkAttachment, a: Analysis, data: AttachmentData, t: datetime.datetime | None
) -> None:
    """Observe seconds from the last client write behind the assignment (the NA's spec, or its subnet's if
    later) to `t`, labelled by which it was and whether the NA met address contention."""
    na_t = na.extended_metadata.write_time(SECTION_SPEC)
    if t is None or na_t is None:
        return
    label, last = "na", na_t
    if a.subnet_time is not None and a.subnet_time > na_t:
        label, last = "subnet", a.subnet_time
    hist.labels(label, "true" if data.address_contention else "false").observe((t - last).total_seconds())


class AddressStatusWriter:
    """Writes the status fields IPAM owns through an `API`, timed into `kos_ipam_update_latency_seconds`."""

    def __init__(self, api: API, metrics: IPAMMetrics) -> None:
        self.api = api
        self.metrics = metrics

    async def write(
        self,
        key: str,
        na: NetworkAttachment,
        data: AttachmentData,
        a: Analysis,
        lock: IPLock | None,
        ip: str,
        errs: list[str],
    ) -> bool:
        """Make `na`'s status show `lock`/`ip` (none when `lock` is None) and `errs`; whether a write happened
        (False: it already did). Raises Retry when the NA is gone or the write failed (a 409 included)."""
        st = na.status
        new_status = msgspec.structs.replace(
            st,
            errors=NetworkAttachmentErrors(ipam=tuple(errs), host=st.errors.host),
            subnet_creation_time=a.subnet_time,
            address_contention=data.address_contention,
            lock_uid=lock.metadata.uid if lock is not None else "",
            address_vni=a.vni if lock is not None else 0,
            ipv4=ip if lock is not None else "",
        )
        if new_status == st:
            return False
        with Timed(self.metrics.update_latency, ok(bool(errs))) as t:
            try:
                updated = await self.api.update_status(msgspec.structs.replace(na, status=new_status))
            except NotFound:
                t.outcome = "nf"
                raise Retry(f"{key} is gone") from None
            except StatusError as e:
                raise Retry(f"Failed to write into status of NetworkAttachment {key}: {e}") from e
        if lock is not None:
            observe_since_client_write(self.metrics.client_write_to_address, na, a, data,
                                       updated.extended_metadata.write_time(SECTION_ADDRESS))  # fmt: skip
            data.anticipated_ip = ip
            data.anticipating_rv = na.metadata.resource_version
            data.anticipated_rv = updated.metadata.resource_version
            data.anticipation_subnet_uid = a.subnet_uid
            log.debug("assigned address", key=key, ip=ip)
        return True
