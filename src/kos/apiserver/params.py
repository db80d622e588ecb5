"""Query parameters of the REST surface (and of multiplexed watches): parsed, checked, with clear errors."""

from __future__ import annotations

import functools
from typing import Any

from kos.api.errors import BadRequest
from kos.api.resources import Resource
from kos.api.selectors import FieldSelector, LabelSelector, SelectorError, parse_field_selector, parse_label_selector


def flag(q: Any, name: str) -> bool:
    v = q.get(name)
    if v is None or v == "":
        return False
    if v in ("true", "1", "True"):
        return True
    if v in ("false", "0", "False"):
        return False
    raise BadRequest(f"invalid value for {name}: {v!r} (use true or false)")


def int_param(q: Any, name: str, default: int = 0) -> int:
    v = q.get(name)
    if v is None or v == "":
        return default
    if not v.isascii() or not v.lstrip("-").isdigit() or int(v) < 0:
        raise BadRequest(f"invalid value for {name}: {v!r} (use a non-negative integer)")
    return int(v)


@functools.lru_cache(maxsize=1 << 16)
def _parse_selectors(label: str, fields: str) -> tuple[LabelSelector, FieldSelector]:
    """Parsed selectors are immutable and clients repeat theirs: parse each once.

    An agent's per-VNI watches select on (VNI, its own node), so N nodes and V VNIs give up to N·V
    distinct selectors; at 4,096 entries the driver's 100-node, 100-VNI runs missed and re-parsed.
    """
    try:
        ls = parse_label_selector(label)
    except SelectorError as e:
        raise BadRequest(f"unable to parse requirement: {e}") from None
    try:
        fs = parse_field_selector(fields)
    except SelectorError as e:
        raise BadRequest(str(e)) from None
    return ls, fs


def selectors(q: Any, res: Resource) -> tuple[LabelSelector, FieldSelector]:
    ls, fs = _parse_selectors(q.get("labelSelector", ""), q.get("fieldSelector", ""))
    for r in fs.requirements:
        if r.field not in res.selectable:
            raise BadRequest(
                f'{res.kind} does not have field with label "{r.field}"; selectable fields are: '
                + ", ".join(res.selectable)
            )
    return ls, fs


def rv_param(q: Any) -> str:
    rv = q.get("resourceVersion", "")
    if rv and (not rv.isascii() or not rv.isdigit() or len(rv) > 19):
        raise BadRequest(f"invalid resourceVersion {rv!r}: must be a non-negative integer returned by the server")
    return str(rv)


def dry_run(q: Any) -> bool:
    values = q.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise BadRequest(f'invalid dryRun value {v!r}: the only supported value is "All"')
    return bool(values)


def field_validation(q: Any) -> str:
    v = q.get("fieldValidation", "Strict") or "Strict"
    if v not in ("Strict", "Warn", "Ignore"):
        raise BadRequest(f'invalid fieldValidation {v!r}: use "Strict", "Warn" or "Ignore"')
    return str(v)
