"""Applying patches to an object's JSON form: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

A patch is untrusted input that runs on the event loop, so its work is bounded
as kube-apiserver bounds it (k8s.io/apiserver/pkg/endpoints/handlers/patch.go):

- a JSON patch has at most `MAX_JSON_PATCH_OPERATIONS` (10,000, kube-apiserver's
  `maxJSONPatchOperations`) operations, else 413 RequestEntityTooLarge;
- `copy` is the one operation that makes a document grow faster than the patch
  itself (copying `/spec/x` into `/spec/x/-` doubles it each time): the bytes
  all copies add are counted *before* each copy is made and capped (evanphx/json-patch's
  `AccumulatedCopySizeLimit`, which kube-apiserver sets to its request limit), else 422;
- inserting into or removing from an array shifts what follows: the elements
  all operations shift are counted before each one and capped at
  `MAX_JSON_PATCH_SHIFTS` (422) — 10,000 copies to the front of a 250,000-element
  array (a 0.9 MB patch within every other bound) took the event loop a second;
- documents nested past Python's recursion limit are refused (400), not a 500;
- the caller bounds the size of the result (413), as for any request body.

Each JSON patch operation is applied in place, in turn, on a document the caller
decoded for this attempt (no copy of the whole document per operation); the
operations are built afresh per attempt (`json_patch_ops`), because applying
them in place hands their values to the document.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import msgspec

from kos.api.errors import BadRequest, Invalid, RequestEntityTooLarge
from kos.api.field import invalid
from kos.api.meta import StatusCause, StatusDetails

MAX_JSON_PATCH_OPERATIONS = 10_000
MAX_JSON_PATCH_SHIFTS = 10_000_000
"""Array elements a patch's operations may shift in all (about 20 ms of memmove here); kos's own bound."""
_SHIFTING = {"add": ("path",), "remove": ("path",), "copy": ("path",), "move": ("from", "path")}
_MUST_EXIST = {"remove": ("path",), "replace": ("path",), "move": ("from",), "copy": ("from",)}
"""The locations an operation reads or removes: RFC 6902 §4.2–4.5 make a missing one an error."""
_PARENT_MUST_EXIST = {"add": "path", "move": "path", "copy": "path"}
"""The location an operation adds at: its parent must exist (RFC 6902 §4.1)."""


class PathMissing(Exception):
    """A JSON patch operation names a location (or the parent of one it adds) that the document lacks."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces.

    Values are taken from `patch` as they are, not copied: each call gets a freshly decoded patch.
    """
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def apply_merge_patch(target: Any, patch: dict[str, Any]) -> Any:
    try:
        return merge_patch(target, patch)
    except RecursionError:
        raise BadRequest("the merge patch is nested too deeply") from None


def check_merge_patch(patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise BadRequest("a JSON merge patch must be a JSON object")
    return patch


def check_json_patch(patch: Any) -> None:
    """Refuse a JSON patch that is not a list of at most 10,000 well-formed operations (400, 413)."""
    if not isinstance(patch, list):
        raise BadRequest("a JSON patch must be a JSON array of operations")
    if len(patch) > MAX_JSON_PATCH_OPERATIONS:
        raise RequestEntityTooLarge(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(patch)}"
        )
    json_patch_ops(patch)


def json_patch_ops(patch: list[Any]) -> list[jsonpatch.JsonPatch]:
    """The operations of a checked JSON patch, each as its own one-operation patch (to report which one fails)."""
    ops = []
    for i, op in enumerate(patch):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise BadRequest(f'invalid JSON patch: operation {i + 1} must be an object with "op" and "path"')
        try:
            ops.append(jsonpatch.JsonPatch([op]))
        except (jsonpatch.InvalidJsonPatch, jsonpatch.JsonPointerException, TypeError, AttributeError,
                KeyError) as e:  # fmt: skip
            raise BadRequest(f"invalid JSON patch: operation {i + 1}: {e}") from None
    return ops


def apply_json_patch(doc: Any, ops: list[jsonpatch.JsonPatch], kind: str, name: str, *, max_copy_bytes: int) -> Any:
    """Apply `ops` to `doc` in place, in order; a failing operation is 422 naming it, a deep document 400."""
    copied = shifted = 0
    for i, p in enumerate(ops):
        op = p.patch[0]
        where = f'operation {i + 1} ("{op.get("op")}" at "{_shown(op.get("path"))}")'
        try:
            shifted += _shifts(doc, op)
            if shifted > MAX_JSON_PATCH_SHIFTS:
                why = f"the patch would shift more than {MAX_JSON_PATCH_SHIFTS} array elements; send it in parts"
                raise _invalid(kind, name, where, why)
            _require_locations(doc, op)
            if op.get("op") == "copy" and isinstance(op.get("from"), str):  # else apply() says what is missing
                # copied through its JSON, which measures it before anything grows, and is ~50x faster than
                # the deepcopy jsonpatch would make (a 1 MiB list of small numbers: ~15 ms against ~0.7 s)
                data = msgspec.json.encode(jsonpatch.JsonPointer(op["from"]).resolve(doc))
                copied += len(data)
                if copied > max_copy_bytes:
                    why = f"the patch's copies would add more than {max_copy_bytes} bytes to the object"
                    raise _invalid(kind, name, where, why)
                doc = _add(doc, op["path"], msgspec.json.decode(data))
            elif op.get("op") in ("add", "replace") and "value" in op:
                # the value is this attempt's own (the ops are built afresh per attempt): jsonpatch would deepcopy
                # it, ~0.2 s for a 250,000-element array
                doc = (_add if op["op"] == "add" else _replace)(doc, op["path"], op["value"])
            else:
                doc = p.apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            why = f"the value there is not {_shown(json.dumps(op.get('value')))}"
            raise _invalid(kind, name, where, why) from None
        except RecursionError:
            raise BadRequest(f"the JSON patch could not be applied: {where}: the result is nested too deeply") from None
        except (PathMissing, KeyError):
            raise _invalid(kind, name, where, "the path does not exist") from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, IndexError,
                ValueError) as e:  # fmt: skip
            why = str(e).split(" in {")[0] or type(e).__name__
            raise _invalid(kind, name, where, _shown(why)) from None
    return doc


def _require_locations(doc: Any, op: dict[str, Any]) -> None:
    """PathMissing unless the locations `op` reads exist, and the parent of the one it adds at.

    A malformed pointer or index, or a step into a scalar, is left for applying the operation to report.
    """
    for key in _MUST_EXIST.get(op.get("op", ""), ()):
        if isinstance(op.get(key), str):
            _walk(doc, jsonpatch.JsonPointer(op[key]).parts)
    target = _PARENT_MUST_EXIST.get(op.get("op", ""))
    if target is not None and isinstance(op.get(target), str):
        parts = jsonpatch.JsonPointer(op[target]).parts
        if parts:
            parent = _walk(doc, parts[:-1])
            if isinstance(parent, list):
                index = jsonpatch.JsonPointer.get_part(parent, parts[-1])
                if isinstance(index, int) and index > len(parent):
                    raise PathMissing(op[target])


def _walk(doc: Any, parts: list[str]) -> Any:
    """The value at `parts` (a pointer's unescaped tokens); PathMissing where a member or element is absent."""
    for part in parts:
        token = jsonpatch.JsonPointer.get_part(doc, part)  # a bad index or a scalar: jsonpointer's own error
        if isinstance(doc, dict):
            if token not in doc:
                raise PathMissing(part)
        elif isinstance(doc, list) and not (isinstance(token, int) and token < len(doc)):  # "-" is past the end
            raise PathMissing(part)
        doc = doc[token]
    return doc


def _shifts(doc: Any, op: dict[str, Any]) -> int:
    """How many array elements `op` moves: the length of each array it inserts into or removes from."""
    n = 0
    for key in _SHIFTING.get(op.get("op", ""), ()):
        pointer = op.get(key)
        if not isinstance(pointer, str) or not pointer:
            continue
        try:
            parent, _ = jsonpatch.JsonPointer(pointer).to_last(doc)
        except (jsonpatch.JsonPointerException, TypeError, KeyError, IndexError):
            continue  # applying it says what is wrong
        if isinstance(parent, list):
            n += len(parent)
    return n


def _add(doc: Any, path: Any, value: Any) -> Any:
    """RFC 6902 `add` of a value that is already a private copy (jsonpatch's `add` would copy it again)."""
    if not isinstance(path, str):
        raise jsonpatch.InvalidJsonPatch("Invalid 'path'")
    parent, part = jsonpatch.JsonPointer(path).to_last(doc)
    if part is None:  # the whole document
        return value
    if isinstance(parent, dict):
        parent[part] = value
    elif isinstance(parent, list) and part == "-":
        parent.append(value)
    elif isinstance(parent, list) and isinstance(part, int) and 0 <= part <= len(parent):
        parent.insert(part, value)
    elif isinstance(parent, list):
        raise PathMissing(path)
    else:
        raise jsonpatch.JsonPatchConflict(f"the parent of {path} is neither an object nor an array")
    return doc


def _replace(doc: Any, path: Any, value: Any) -> Any:
    """RFC 6902 `replace` of a value that is already a private copy: the target must exist."""
    if not isinstance(path, str):
        raise jsonpatch.InvalidJsonPatch("Invalid 'path'")
    parent, part = jsonpatch.JsonPointer(path).to_last(doc)
    if part is None:
        return value
    if isinstance(parent, dict):
        exists = part in parent
    else:
        exists = isinstance(parent, list) and isinstance(part, int) and 0 <= part < len(parent)
    if not exists:
        raise PathMissing(path)
    parent[part] = value
    return doc


def _shown(text: Any, limit: int = 200) -> str:
    s = str(text)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} characters)"


def _invalid(kind: str, name: str, where: str, why: str) -> Invalid:
    err = invalid("patch", None, f"{where}: {why}")
    return Invalid(
        f'{kind}.network.example.com "{name}" is invalid: the JSON patch could not be applied: {where}: {why}',
        details=StatusDetails(
            name=name, kind=kind, causes=(StatusCause(reason=err.type.reason, message=err.body(), field="patch"),)
        ),
    )


def result_too_large(size: int, limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(
        f"Request entity too large: the patched object would be {size} bytes; the limit is {limit} bytes"
    )
