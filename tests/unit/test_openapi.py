"""The OpenAPI documents type and describe every field (what `kubectl explain` shows).

Before issue 10 every list field (postCreateExec, postDeleteExec, errors.ipam,
errors.host, finalizers, ownerReferences, ...) was a free-form object and no field
had a description, so `kubectl explain networkattachment.spec` said `<Object>` and
`<no description>`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from kos.api import descriptions
from kos.api.resources import ALL
from kos.apiserver import discovery

FREE_FORM_WITH_REASON = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": "a trie of field paths, free-form by design (as in Kubernetes)",
}


def _docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("v2", discovery.openapi_v2()["definitions"]),
        ("v3", discovery.openapi_v3()["components"]["schemas"]),
    ]


def _walk(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every schema nested in `schema` (properties, items, map values, allOf), with its path."""
    out = [(path, schema)]
    for name, prop in schema.get("properties", {}).items():
        out += _walk(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += _walk(schema["additionalProperties"], f"{path}{{}}")
    for i, sub in enumerate(schema.get("allOf", [])):
        out += _walk(sub, f"{path}/allOf{i}")
    return out


@pytest.mark.parametrize(("version", "defs"), _docs(), ids=["v2", "v3"])
def test_no_field_is_a_free_form_object_without_reason(version: str, defs: dict[str, Any]) -> None:
    problems = []
    for name, d in defs.items():
        for path, s in _walk(d, name):
            if "$ref" in s or "allOf" in s:
                continue
            typ = s.get("type")
            if typ is None:
                problems.append(f"{path}: no type")
            elif typ == "object" and "properties" not in s and "additionalProperties" not in s:
                if path not in FREE_FORM_WITH_REASON:
                    problems.append(f"{path}: a free-form object")
            elif typ == "array" and not ({"type", "$ref"} & set(s.get("items", {}))):
                problems.append(f"{path}: an array without an item type")
    assert problems == []


@pytest.mark.parametrize(("version", "defs"), _docs(), ids=["v2", "v3"])
def test_every_field_and_type_is_described(version: str, defs: dict[str, Any]) -> None:
    missing = [name for name, d in defs.items() if not d.get("description")]
    for name, d in defs.items():
        missing += [f"{name}.{p}" for p, s in d.get("properties", {}).items() if not s.get("description")]
    assert missing == []


@pytest.mark.parametrize(("version", "defs"), _docs(), ids=["v2", "v3"])
def test_the_list_fields_are_arrays_of_their_items(version: str, defs: dict[str, Any]) -> None:
    prefix = "#/definitions/" if version == "v2" else "#/components/schemas/"
    meta = "io.k8s.apimachinery.pkg.apis.meta.v1."
    na = "com.example.network.v1alpha1."

    def prop(definition: str, field: str) -> dict[str, Any]:
        return defs[definition]["properties"][field]  # type: ignore[no-any-return]

    strings = {"type": "array", "items": {"type": "string"}}
    for definition, field in [(f"{na}NetworkAttachmentSpec", "postCreateExec"),
                              (f"{na}NetworkAttachmentSpec", "postDeleteExec"),
                              (f"{na}NetworkAttachmentErrors", "ipam"), (f"{na}NetworkAttachmentErrors", "host"),
                              (f"{na}SubnetStatus", "errors"), (f"{na}ExecReport", "command")]:  # fmt: skip
        p = prop(definition, field)
        assert {k: p[k] for k in ("type", "items")} == strings and p["x-kubernetes-list-type"] == "atomic"
    fin = prop(f"{meta}ObjectMeta", "finalizers")
    assert fin["items"] == {"type": "string"} and fin["x-kubernetes-list-type"] == "set"
    owners = prop(f"{meta}ObjectMeta", "ownerReferences")
    assert owners["items"] == {"$ref": f"{prefix}{meta}OwnerReference"}
    assert owners["x-kubernetes-list-map-keys"] == ["uid"]
    writes = prop(f"{na}ExtendedObjectMeta", "writes")
    assert writes["items"] == {"$ref": f"{prefix}{na}ObjectWrite"} and writes["x-kubernetes-list-map-keys"] == [
        "section"
    ]
    # a described reference: beside $ref in v2, wrapped in allOf in v3 (where $ref admits no siblings)
    spec = prop(f"{na}NetworkAttachment", "spec")
    ref = {"$ref": f"{prefix}{na}NetworkAttachmentSpec"}
    assert spec == ({**ref, "description": spec["description"]} if version == "v2"
                    else {"allOf": [ref], "description": spec["description"]})  # fmt: skip


def _structs() -> set[type[msgspec.Struct]]:
    seen: set[type[msgspec.Struct]] = set()
    todo: list[Any] = [t for r in ALL for t in (r.object_type, r.list_type)]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            if t in seen:
                continue
            seen.add(t)
            todo += [f.type for f in msgspec.structs.fields(t)]
        else:
            todo += list(getattr(t, "__args__", ()))
    return seen


def test_the_descriptions_cover_every_field_of_every_type_and_nothing_else() -> None:
    structs = _structs()
    fields = {(t.__name__, f.encode_name) for t in structs for f in msgspec.structs.fields(t)}
    described = {(t, f) for t, fs in descriptions.FIELDS.items() for f in fs if t != "ManagedFieldsEntry"}
    assert fields - described == set(), "fields without a description"
    assert described - fields == set(), "descriptions of fields that do not exist"
    assert {t.__name__ for t in structs} - set(descriptions.TYPES) == set()


def test_a_field_without_a_schema_is_an_error_not_a_free_form_object() -> None:
    class Odd(msgspec.Struct):
        anything: Any = None

    with pytest.raises(TypeError, match=r"Odd\.anything: no OpenAPI schema"):
        discovery._Schemas({}, "#/definitions/", v3=False).ref(Odd)
