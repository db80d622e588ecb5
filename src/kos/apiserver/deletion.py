"""Kubernetes' deletion rules, apart from the store: preconditions, finalizers, the "being deleted" mark.

A delete may carry preconditions (uid, resourceVersion: 409 Conflict with a `PreconditionFailed` cause
when they do not hold, worded as kube-apiserver words them). Its propagation policy adds a finalizer — `orphan` for Orphan,
`foregroundDeletion` for Foreground (k8s.io/apiserver registry/generic/registry/store.go,
`deletionFinalizersForGarbageCollection`) — which the garbage collector (`gc.py`) removes when it has
done its part; a kind's write rules may hold the object with a finalizer of their own. An object with
finalizers is not deleted but marked: `deletionTimestamp` set (whole seconds, as metav1.Time) and a
grace period of 0; the write that removes its last finalizer deletes it.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from kos.api import codec, errors
from kos.apiserver.cache import Entry

ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteRequest:
    uid: str | None = None
    resource_version: str | None = None
    propagation_policy: str = "Background"
    """Background, Orphan or Foreground (DeleteOptions.propagationPolicy)."""
    dry_run: bool = False


def check_preconditions(plural: str, name: str, old: Entry, req: DeleteRequest) -> None:
    """Conflict (409, with a `PreconditionFailed` cause) unless `req`'s uid and resourceVersion hold for `old`."""
    meta = old.obj.metadata
    if req.uid is not None and req.uid != meta.uid:
        raise errors.precondition_failed(plural, name, "UID", req.uid, meta.uid)
    if req.resource_version is not None and req.resource_version != str(old.rev):
        raise errors.precondition_failed(plural, name, "ResourceVersion", req.resource_version, str(old.rev))


def finalizers_for(current: tuple[str, ...], policy: str, hold: str) -> tuple[str, ...]:
    """`current` plus the finalizer of the propagation `policy` and `hold` (a write rule's; "" for none)."""
    finalizers = list(current)
    if policy == "Orphan" and ORPHAN_FINALIZER not in finalizers:
        finalizers.append(ORPHAN_FINALIZER)
    elif policy == "Foreground" and FOREGROUND_FINALIZER not in finalizers:
        finalizers.append(FOREGROUND_FINALIZER)
    if hold and hold not in finalizers:
        finalizers.append(hold)
    return tuple(finalizers)


def marked_deleting(obj: Any, finalizers: tuple[str, ...], now: datetime.datetime) -> Any:
    """`obj` held by `finalizers` and marked as being deleted (since `now`, unless it already was)."""
    meta = obj.metadata
    return codec.replace_meta(
        obj,
        resource_version="",
        finalizers=finalizers,
        deletion_timestamp=meta.deletion_timestamp or now.replace(microsecond=0),
        deletion_grace_period_seconds=0,
    )
