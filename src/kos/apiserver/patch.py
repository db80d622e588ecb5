"""Applying patches to an object's JSON form: JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch

from kos.api.errors import BadRequest, Invalid
from kos.api.field import invalid
from kos.api.meta import StatusCause, StatusDetails


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def check_merge_patch(patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise BadRequest("a JSON merge patch must be a JSON object")
    return patch


def check_json_patch(patch: Any) -> list[jsonpatch.JsonPatch]:
    """The operations of a JSON patch, each as its own one-operation patch (to report which one fails)."""
    if not isinstance(patch, list):
        raise BadRequest("a JSON patch must be a JSON array of operations")
    ops = []
    for i, op in enumerate(patch):
        try:
            ops.append(jsonpatch.JsonPatch([op]))
        except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError, KeyError) as e:
            raise BadRequest(f"invalid JSON patch: operation {i + 1}: {e}") from None
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise BadRequest(f'invalid JSON patch: operation {i + 1} must be an object with "op" and "path"')
    return ops


def apply_json_patch(doc: Any, ops: list[jsonpatch.JsonPatch], kind: str, name: str) -> Any:
    for i, p in enumerate(ops):
        op = p.patch[0]
        where = f'operation {i + 1} ("{op.get("op")}" at "{op.get("path")}")'
        try:
            doc = p.apply(doc)
        except jsonpatch.JsonPatchTestFailed:
            why = f"the value there is not {json.dumps(op.get('value'))}"
            raise _invalid(kind, name, where, why) from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError, IndexError) as e:
            why = "the path does not exist" if _missing(e) else (str(e).split(" in {")[0] or type(e).__name__)
            raise _invalid(kind, name, where, why) from None
    return doc


def _missing(e: BaseException) -> bool:
    text = str(e)
    return "not found" in text or "can't remove" in text.lower() or "out of range" in text or isinstance(e, KeyError)


def _invalid(kind: str, name: str, where: str, why: str) -> Invalid:
    err = invalid("patch", None, f"{where}: {why}")
    return Invalid(
        f'{kind}.network.example.com "{name}" is invalid: the JSON patch could not be applied: {where}: {why}',
        details=StatusDetails(
            name=name, kind=kind, causes=(StatusCause(reason=err.type.reason, message=err.body(), field="patch"),)
        ),
    )
