"""Query parameters of the REST surface (and of multiplexed watches): parsed, checked, with clear errors.

Scalars are read as kube-apiserver's parameter codec reads them
(k8s.io/apimachinery/pkg/runtime/conversion.go): the first of repeated values
counts; a boolean is false when absent, `0` or `false` (any case) and true for
anything else, even an empty value; integers are decimal int64. A value that is
not an int64 is 400 BadRequest with the parameter's name — never Python's
int-string conversion error (thousands of digits) as a 500.
"""

from __future__ import annotations

import collections
from typing import Any

from kos.api import errors, field
from kos.api.errors import BadRequest
from kos.api.field import FieldError
from kos.api.resources import Resource
from kos.api.selectors import FieldSelector, LabelSelector, SelectorError, parse_field_selector, parse_label_selector

META_GROUP = "meta.k8s.io"
"""The group of ListOptions, CreateOptions, DeleteOptions... in a 422 about them."""
FIELD_VALIDATION = ("", "Ignore", "Strict", "Warn")
INT64_MAX = (1 << 63) - 1
_INT64_DIGITS = len(str(INT64_MAX))


def shown(value: str, limit: int = 40) -> str:
    """`value` quoted for an error message, cut short: a parameter may be as long as a request line."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def cut(value: str, limit: int = 100) -> str:
    """`value` for an error's field value, cut short."""
    return value if len(value) <= limit else value[:limit] + "..."


def flag(q: Any, name: str) -> bool:
    """A boolean parameter: false when absent, `0` or `false` (any case), true otherwise (Kubernetes' rule)."""
    v = q.get(name)
    return v is not None and v != "0" and v.lower() != "false"


def optional_flag(q: Any, name: str) -> bool | None:
    """A boolean parameter whose absence means something (`sendInitialEvents`): None when absent."""
    return None if q.get(name) is None else flag(q, name)


def parse_int64(text: str, name: str, *, minimum: int = 0) -> int:
    """A decimal int64 (an optional '-', ASCII digits) no less than `minimum`; anything else is 400."""
    digits = text[1:] if text[:1] == "-" else text
    if not digits or len(digits) > _INT64_DIGITS or not digits.isascii() or not digits.isdigit():
        raise BadRequest(f"invalid value for {name}: {shown(text)}: must be an integer")
    n = int(text)
    if n > INT64_MAX or n < -INT64_MAX - 1:
        raise BadRequest(f"invalid value for {name}: {shown(text)}: out of range for a 64-bit integer")
    if n < minimum:
        raise BadRequest(f"invalid value for {name}: {shown(text)}: must be at least {minimum}")
    return n


def int_param(q: Any, name: str, default: int = 0) -> int:
    """A non-negative int64 parameter (`limit`, `timeoutSeconds`, `gracePeriodSeconds`), `default` when absent."""
    v = q.get(name)
    if v is None or v == "":
        return default
    if len(v) <= 18 and v.isdigit() and v.isascii():  # the usual case, and surely an int64
        return int(v)
    return parse_int64(v, name)


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
        raise BadRequest(f"invalid resourceVersion {shown(rv)}: must be a non-negative integer returned by the server")
    return str(rv)


def include_object(q: Any, table: bool) -> str:
    """A Table's `includeObject` (None, Metadata — the default — or Object); others are 422 for a Table, as
    ValidateTableOptions has it, and ignored otherwise (kube-apiserver reads TableOptions only for Tables)."""
    v = q.get("includeObject", "") or "Metadata"
    if table and v not in ("None", "Metadata", "Object"):
        err = field.not_supported("includeObject", cut(v), ["None", "Metadata", "Object"])
        raise errors.invalid("TableOptions", "", [err], group=META_GROUP)
    return str(v)


def dry_run_errors(values: list[str] | tuple[str, ...]) -> list[FieldError]:
    """ValidateDryRun (k8s.io/apimachinery/pkg/apis/meta/v1/validation): every value must be `All`."""
    if all(v == "All" for v in values):
        return []
    return [field.not_supported("dryRun", [cut(v) for v in values[:10]], ["All"])]


def write_options(q: Any, kind: str) -> tuple[bool, str]:
    """(dry run, field validation) of a create, update or patch; `kind` is CreateOptions, UpdateOptions or
    PatchOptions, whose validation failures are 422 Invalid as kube-apiserver's ValidateCreateOptions etc."""
    dry = q.getall("dryRun", [])
    mode = q.get("fieldValidation", "") or ""
    errs = dry_run_errors(dry)
    if mode not in FIELD_VALIDATION:
        errs.append(field.not_supported("fieldValidation", cut(mode), list(FIELD_VALIDATION)))
    if errs:
        raise errors.invalid(kind, "", errs, group=META_GROUP)
    return bool(dry), mode or "Strict"  # kos's default is Strict (docs/api.md)
