"""Server-side printing: `meta.k8s.io` Tables with each kind's columns, for `kubectl get`.

kubectl asks for Tables and prints them as they come, so the columns shown by
`kubectl get sn,na,ipl` are defined here from the resource table (Subnet: VNI,
CIDR, VALIDATED; NA: SUBNET, NODE, IPV4, MAC, HOSTIP, READY; IPLock: SUBNET,
OWNER), plus NAME and AGE as kubectl shows for every kind.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import msgspec

from kos.api.resources import Resource
from kos.apiserver.cache import Entry

_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
_AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "format": "",
    "description": "Time since the object was created.",
    "priority": 0,
}


def human_duration(d: datetime.timedelta) -> str:
    """Kubernetes' `duration.HumanDuration`: 45s, 5m30s, 3h, 2d4h, 3y."""
    seconds = int(d.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _ordered(resource: Resource) -> list[Any]:
    """Name, the always-shown columns, Age, then the `-o wide` columns (kubectl's order)."""
    return [c for c in resource.columns if c.priority == 0] + [None] + [c for c in resource.columns if c.priority]


def column_definitions(resource: Resource) -> list[dict[str, Any]]:
    cols = [_NAME_COLUMN]
    for c in _ordered(resource):
        if c is None:
            cols.append(_AGE_COLUMN)
        else:
            cols.append({"name": c.name, "type": c.type, "format": "", "description": c.description,
                         "priority": c.priority})  # fmt: skip
    return cols


def _row(resource: Resource, entry: Entry, now: datetime.datetime, include: str) -> dict[str, Any]:
    obj = entry.obj
    created = obj.metadata.creation_timestamp
    cells: list[Any] = [obj.metadata.name]
    for c in _ordered(resource):
        if c is None:
            cells.append(human_duration(now - created) if created else "<unknown>")
        else:
            cells.append(c.cell(obj))
    row: dict[str, Any] = {"cells": cells}
    if include == "Object":
        row["object"] = msgspec.Raw(entry.json())
    elif include != "None":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": msgspec.to_builtins(obj.metadata),
        }
    return row


def render_table(
    resource: Resource,
    entries: Iterable[Entry],
    *,
    resource_version: int | str,
    now: datetime.datetime,
    version: str = "v1",
    include_object: str = "Metadata",
    continue_token: str = "",
    remaining: int | None = None,
    headers: bool = True,
) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(resource_version)}
    if continue_token:
        meta["continue"] = continue_token
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    table = {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": meta,
        "columnDefinitions": column_definitions(resource) if headers else [],
        "rows": [_row(resource, e, now, include_object) for e in entries],
    }
    return msgspec.json.encode(table)
