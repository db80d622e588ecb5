"""Request bodies decoded strictly: objects of a kind, JSON patches' documents, DeleteOptions.

Malformed input becomes a `StatusError` with kube-apiserver's code — 400 for a
body that is not JSON or not the kind, 422 Invalid (naming the field) for a value
of the wrong type — and changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from kos.api import codec, errors, field
from kos.api.errors import BadRequest
from kos.api.meta import DeleteOptions
from kos.api.resources import Resource
from kos.apiserver import params
from kos.apiserver.registry import DeleteRequest

MALFORMED = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""What decoding raises for bytes that are not (bounded, UTF-8) JSON."""
_AT = " - at `$"
"""How msgspec ends an error message with the JSON path of the offending value."""


def reason(e: BaseException) -> str:
    """Why a body did not decode, in words for the client."""
    if isinstance(e, RecursionError):
        return "it is nested too deeply"
    if isinstance(e, UnicodeDecodeError):
        return f"it is not valid UTF-8 (at byte {e.start})"
    return str(e)


def _split_error(msg: str) -> tuple[str, str]:
    """(what is wrong, the field path) of a msgspec error such as "Expected `int`, got `str` - at `$.spec.vni`"."""
    detail, sep, at = msg.rpartition(_AT)
    if not sep or not at.endswith("`"):
        return msg, ""
    return detail, at[:-1].lstrip(".")


def _value_at(doc: Any, path: str) -> Any:
    cur = doc
    for tok in re.findall(r"[^.\[\]]+|\[[0-9]+\]|\['[^']*'\]", path):
        try:
            if tok.startswith("[") and tok[1:-1].isdigit():
                cur = cur[int(tok[1:-1])]
            elif tok.startswith("['"):
                cur = cur[tok[2:-2]]
            else:
                cur = cur[tok]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def decode_object(res: Resource, body: bytes, mode: str, name_hint: str = "") -> tuple[Any, list[str]]:
    """Decode a request body into the kind's type; (object, warnings). `mode` is the fieldValidation
    (Strict, Warn, Ignore). Malformed input raises a StatusError (400, or 422 naming the field)."""
    try:
        obj = codec.decode(body, res.object_type)
        if obj.kind == res.kind and obj.api_version == res.api_version:
            return obj, []
        first_error = ""
    except msgspec.ValidationError as e:
        first_error = str(e)
    except MALFORMED as e:
        raise BadRequest(f"the request body is not valid JSON: {reason(e)}") from None
    raw = _raw_object(res, body)
    if first_error.startswith("Object contains unknown field"):
        obj, warnings, first_error = _lenient(res, body, mode, first_error)
        if obj is not None:
            return obj, warnings
    detail, path = _split_error(first_error)
    meta = raw.get("metadata")
    name = (meta.get("name") if isinstance(meta, dict) else None) or name_hint
    raise errors.invalid(res.kind, str(name or ""), [field.invalid(path or "<body>", _value_at(raw, path), detail)])


def _raw_object(res: Resource, body: bytes) -> dict[str, Any]:
    """The body as a JSON object whose apiVersion and kind (if given) are the kind's; else 400."""
    try:
        raw = msgspec.json.decode(body)
    except MALFORMED as e:
        raise BadRequest(f"the request body is not valid JSON: {reason(e)}") from None
    if not isinstance(raw, dict):
        raise BadRequest(f"the request body must be a JSON object (a {res.kind}), not {type(raw).__name__}")
    av, kind = raw.get("apiVersion"), raw.get("kind")
    if av is not None and av != res.api_version:
        raise BadRequest(
            f"the API version in the data ({av}) does not match the expected API version ({res.api_version})"
        )
    if kind is not None and kind != res.kind:
        raise BadRequest(
            f'{kind} in version "{res.version}" cannot be handled as a {res.kind}: the kind must be {res.kind}'
        )
    return raw


def _lenient(res: Resource, body: bytes, mode: str, first_error: str) -> tuple[Any, list[str], str]:
    """Unknown fields: dropped with a warning (Warn), silently (Ignore), or refused (Strict, 400)."""
    try:
        obj, dropped = codec.decode_lenient(body, res.object_type)
    except msgspec.ValidationError as e2:
        return None, [], str(e2)
    if dropped and mode == "Strict":
        raise BadRequest("strict decoding error: " + ", ".join(f'unknown field "{d}"' for d in dropped))
    warnings = [f'unknown field "{d}"' for d in dropped] if mode == "Warn" else []
    return obj, warnings, first_error


def decode_patch(body: bytes) -> Any:
    """A patch document (merge or JSON patch) as plain JSON values; 400 if it is not JSON."""
    try:
        return msgspec.json.decode(body)
    except MALFORMED as e:
        raise BadRequest(f"the patch is not valid JSON: {reason(e)}") from None


def delete_request(body: bytes, q: Any) -> DeleteRequest:
    """DeleteOptions as kube-apiserver reads them (handlers/delete.go): from the body when there is one, else
    from the query (never a mix); a value that does not decode is 400, then ValidateDeleteOptions' rules
    (both orphanDependents and propagationPolicy, an unknown policy, a dryRun other than All) are 422."""
    opts = _delete_options(body, q)
    policy = opts.propagation_policy
    errs: list[field.FieldError] = []
    if opts.orphan_dependents is not None and policy is not None:
        errs.append(field.invalid("propagationPolicy", params.cut(policy),
                                  "orphanDependents and deletionPropagation cannot be both set"))  # fmt: skip
    if policy is not None and policy not in ("Foreground", "Background", "Orphan"):
        errs.append(field.not_supported("propagationPolicy", params.cut(policy),
                                        ["Foreground", "Background", "Orphan", "nil"]))  # fmt: skip
    errs += params.dry_run_errors(opts.dry_run)
    if errs:
        raise errors.invalid("DeleteOptions", "", errs, group=params.META_GROUP)
    policy = policy or ("Orphan" if opts.orphan_dependents else "Background")
    pre = opts.preconditions
    return DeleteRequest(
        uid=pre.uid if pre else None,
        resource_version=pre.resource_version if pre else None,
        propagation_policy=policy,
        dry_run=bool(opts.dry_run),
    )


def _delete_options(body: bytes, q: Any) -> DeleteOptions:
    if body.strip():
        try:
            opts = codec.decode(body, DeleteOptions)
        except (*MALFORMED, msgspec.ValidationError) as err:
            raise BadRequest(f"the request body is not valid DeleteOptions: {reason(err)}") from None
        grace = opts.grace_period_seconds
        if grace is not None and not -params.INT64_MAX - 1 <= grace <= params.INT64_MAX:
            raise BadRequest("invalid value for gracePeriodSeconds: out of range for a 64-bit integer")
        return opts
    grace_text = q.get("gracePeriodSeconds")
    return DeleteOptions(
        grace_period_seconds=None if grace_text is None else params.parse_int64(
            grace_text, "gracePeriodSeconds", minimum=-params.INT64_MAX - 1),
        orphan_dependents=params.optional_flag(q, "orphanDependents"),
        propagation_policy=q.get("propagationPolicy"),
        dry_run=tuple(q.getall("dryRun", [])),
    )  # fmt: skip
