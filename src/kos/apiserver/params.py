"""Query parameters of the REST surface (and of multiplexed watches): parsed, checked, with clear errors."""

from __future__ import annotations

import collections
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


class SelectorCache:
    """Parsed selectors by their text, bounded by an estimate of their bytes, least recently used first out.

    Parsed selectors are immutable and clients repeat theirs: parse each once. An agent's per-VNI
    watches select on (VNI, its own node), so N nodes and V VNIs give up to N·V distinct selectors
    (the driver's 100-node, 100-VNI runs missed and re-parsed at 4,096 entries). A parsed selector
    takes 20–35 times its text, so a bound by count let 1,500 distinct 7 KB selectors hold ~150 MB:
    the bound is an estimate of bytes (`COST_PER_CHAR` per character, over the measured worst), and
    selectors longer than `MAX_TEXT` — which nobody repeats — are parsed every time, not kept.
    """

    MAX_TEXT = 512
    COST_PER_CHAR = 40
    COST_PER_ENTRY = 256

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: collections.OrderedDict[tuple[str, str], tuple[LabelSelector, FieldSelector]] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def parse(self, label: str, fields: str) -> tuple[LabelSelector, FieldSelector]:
        key = (label, fields)
        entries = self._entries
        hit = entries.get(key)
        if hit is not None:
            entries.move_to_end(key)
            return hit
        parsed = _parse_selectors(label, fields)
        n = len(label) + len(fields)
        if n <= self.MAX_TEXT:
            self.bytes += self.COST_PER_ENTRY + self.COST_PER_CHAR * n
            entries[key] = parsed
            while self.bytes > self.max_bytes:
                (ol, of), _ = entries.popitem(last=False)
                self.bytes -= self.COST_PER_ENTRY + self.COST_PER_CHAR * (len(ol) + len(of))
        return parsed

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


def _parse_selectors(label: str, fields: str) -> tuple[LabelSelector, FieldSelector]:
    try:
        ls = parse_label_selector(label)
    except SelectorError as e:
        raise BadRequest(f"unable to parse requirement: {e}") from None
    try:
        fs = parse_field_selector(fields)
    except SelectorError as e:
        raise BadRequest(str(e)) from None
    return ls, fs


SELECTORS = SelectorCache()


def selectors(q: Any, res: Resource) -> tuple[LabelSelector, FieldSelector]:
    ls, fs = SELECTORS.parse(q.get("labelSelector", ""), q.get("fieldSelector", ""))
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
