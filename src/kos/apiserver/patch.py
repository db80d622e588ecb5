"""Applying patches to an object's JSON form: JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
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


def check_json_patch(patch: Any) -> jsonpatch.JsonPatch:
    if not isinstance(patch, list):
        raise BadRequest("a JSON patch must be a JSON array of operations")
    try:
        return jsonpatch.JsonPatch(patch)
    except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError) as e:
        raise BadRequest(f"invalid JSON patch: {e}") from None


def apply_json_patch(doc: dict[str, Any], patch: jsonpatch.JsonPatch, kind: str, name: str) -> Any:
    try:
        return patch.apply(doc)
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        TypeError,
        KeyError,
        IndexError,
    ) as e:
        err = invalid("patch", None, str(e) or type(e).__name__)
        raise Invalid(
            f'{kind}.network.example.com "{name}" is invalid: the JSON patch could not be applied: {e}',
            details=StatusDetails(
                name=name,
                kind=kind,
                causes=(StatusCause(reason=err.type.reason, message=err.body(), field="patch"),),
            ),
        ) from None
