"""Discovery, `/version` and `/openapi/v2`: what kubectl and the Kubernetes clients read first.

Served from the resource table. The OpenAPI document describes each kind's
schema (derived from the msgspec types, so it cannot drift from them, with every
field's description from `kos.api.descriptions`, so `kubectl explain` explains)
and its operations, including the `fieldValidation` parameter that tells kubectl
to let the server validate fields rather than validating on the client.
"""

from __future__ import annotations

import datetime
import hashlib
import types
import typing
from typing import Any

import msgspec

from kos import __version__
from kos.api import descriptions
from kos.api import meta as api_meta
from kos.api.resources import ALL, GROUP_VERSIONS, Resource
from kos.api.types import GROUP, VERSION

KUBE_COMPAT_MINOR = "30"
"""The Kubernetes minor version reported by /version (kubectl's version dispatcher picks its client from it)."""

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "apiVersion": "v1",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(group: str = GROUP, version: str = VERSION) -> dict[str, Any]:
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    """Every served group: kos's own and coordination.k8s.io (for Lease)."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g, v) for g, v in GROUP_VERSIONS]}


def api_group(group: str = GROUP, version: str = VERSION) -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, version)}


def api_resource_list(group: str = GROUP, version: str = VERSION) -> dict[str, Any]:
    """The resources of one group-version (`/apis/{group}/{version}`)."""
    resources: list[dict[str, Any]] = []
    for r in ALL:
        if r.group != group or r.version != version:
            continue
        resources.append({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
            "shortNames": list(r.short_names),
            "categories": list(r.categories),
        })  # fmt: skip
        if r.has_status:
            resources.append({
                "name": f"{r.plural}/status",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            })  # fmt: skip
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}",
        "resources": resources,
    }


def version_info() -> dict[str, Any]:
    return {
        "major": "1",
        "minor": KUBE_COMPAT_MINOR,
        "gitVersion": f"v1.{KUBE_COMPAT_MINOR}.0+kos-{__version__}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


# --- OpenAPI ------------------------------------------------------------------------------------


_META = "io.k8s.apimachinery.pkg.apis.meta.v1."


class _Schemas:
    """JSON schemas of the API types, derived from the msgspec types and described from `kos.api.descriptions`.

    Every field gets its real type: lists are arrays of typed items (with their Kubernetes list type),
    nested structs are references to their own definitions, and every field and type carries its
    description — what `kubectl explain` shows. A field whose type has no schema is an error here rather
    than a free-form object in the document. In OpenAPI v2 a described reference carries its description
    beside `$ref`; in v3, where `$ref` admits no siblings, it is wrapped in `allOf` (as kube-apiserver does).
    """

    def __init__(self, defs: dict[str, Any], ref_prefix: str, *, v3: bool) -> None:
        self.defs = defs
        self.prefix = ref_prefix
        self.v3 = v3

    def ref(self, t: type) -> dict[str, Any]:
        name = _def_name(t)
        if name not in self.defs:
            self.defs[name] = {}  # placeholder against recursion
            self.defs[name] = self._struct(t)
        return {"$ref": f"{self.prefix}{name}"}

    def _struct(self, t: type) -> dict[str, Any]:
        owner = t.__name__
        props: dict[str, Any] = {}
        required: list[str] = []
        hints = typing.get_type_hints(t)
        for f in msgspec.structs.fields(t):
            props[f.encode_name] = self.field(owner, f.encode_name, hints[f.name])
            if f.required:
                required.append(f.encode_name)
        d: dict[str, Any] = {"type": "object", "properties": props}
        if owner in descriptions.TYPES:
            d["description"] = descriptions.TYPES[owner]
        if required:
            d["required"] = required
        return d

    def field(self, owner: str, name: str, t: Any) -> dict[str, Any]:
        schema = self._schema(t, owner, name)
        if schema.get("type") == "array":
            schema.update(descriptions.LIST_TYPES.get((owner, name), {"x-kubernetes-list-type": "atomic"}))
        if (owner, name) in descriptions.FORMATS:
            schema["format"] = descriptions.FORMATS[owner, name]
        desc = descriptions.FIELDS.get(owner, {}).get(name)
        if desc is None:
            return schema
        if "$ref" in schema:
            return {"allOf": [schema], "description": desc} if self.v3 else {**schema, "description": desc}
        return {**schema, "description": desc}

    def _schema(self, t: Any, owner: str, name: str) -> dict[str, Any]:
        origin = typing.get_origin(t)
        if origin in (types.UnionType, typing.Union):
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if len(args) != 1:
                raise TypeError(f"{owner}.{name}: no OpenAPI schema for the union {t}")
            return self._schema(args[0], owner, name)
        if t is str:
            return {"type": "string"}
        if t is bool:
            return {"type": "boolean"}
        if t is int:
            return {"type": "integer", "format": "int64"}
        if t is datetime.datetime:
            return {"type": "string", "format": "date-time"}
        if origin in (list, tuple):
            item = typing.get_args(t)
            if origin is tuple and (len(item) != 2 or item[1] is not Ellipsis):
                raise TypeError(f"{owner}.{name}: no OpenAPI schema for the fixed-length tuple {t}")
            return {"type": "array", "items": self._schema(item[0], owner, name)}
        if origin is dict:
            _, value = typing.get_args(t)
            return {"type": "object", "additionalProperties": self._schema(value, owner, name)}
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            return self.ref(t)
        if (owner, name) == ("ObjectMeta", "managedFields"):  # kept as raw JSON, described as Kubernetes does
            return self._managed_fields_entry()
        raise TypeError(f"{owner}.{name}: no OpenAPI schema for {t!r}")

    def _managed_fields_entry(self) -> dict[str, Any]:
        fields_v1 = _META + "FieldsV1"
        self.defs[fields_v1] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,  # a trie of field paths: free-form by design
            "description": descriptions.TYPES["FieldsV1"],
        }
        entry = _META + "ManagedFieldsEntry"
        docs = descriptions.FIELDS["ManagedFieldsEntry"]
        time_ = {"type": "string", "format": "date-time"}
        props: dict[str, Any] = {
            n: {"type": "string", "description": docs[n]}
            for n in ("manager", "operation", "apiVersion", "fieldsType", "subresource")
        }
        props["time"] = {**time_, "description": docs["time"]}
        ref = {"$ref": f"{self.prefix}{fields_v1}"}
        props["fieldsV1"] = (
            {"allOf": [ref], "description": docs["fieldsV1"]} if self.v3 else {**ref, "description": docs["fieldsV1"]}
        )
        self.defs[entry] = {"type": "object", "description": descriptions.TYPES["ManagedFieldsEntry"],
                            "properties": props}  # fmt: skip
        return {"$ref": f"{self.prefix}{entry}"}


_KUBERNETES_TYPES = {api_meta.ObjectMeta, api_meta.ListMeta, api_meta.OwnerReference}
"""Kubernetes' own types, named as kube-apiserver names them; the rest (extendedMetadata too) are kos's."""


_COORDINATION_TYPES = {"Lease", "LeaseList", "LeaseSpec"}


def _def_name(t: type) -> str:
    if t in _KUBERNETES_TYPES:
        return f"{_META}{t.__name__}"
    if t.__name__ in _COORDINATION_TYPES:
        return f"io.k8s.api.coordination.v1.{t.__name__}"
    return f"com.example.network.{VERSION}.{t.__name__}"


def _gvk(r: Resource, kind: str | None = None) -> dict[str, str]:
    return {"group": r.group, "version": r.version, "kind": kind or r.kind}


_PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json"]
_WRITE_PARAMS = ["dryRun", "fieldManager", "fieldValidation"]
_LIST_PARAMS = ["labelSelector", "fieldSelector", "resourceVersion", "resourceVersionMatch", "continue", "limit",
                "timeoutSeconds", "watch", "allowWatchBookmarks", "sendInitialEvents"]  # fmt: skip
_INT_PARAMS = {"limit", "timeoutSeconds"}
_BOOL_PARAMS = {"watch", "allowWatchBookmarks", "sendInitialEvents"}


def _operations(r: Resource) -> list[tuple[str, str, str, str, list[str], bool]]:
    """(path, method, action, operationId, query parameters, has a body) for every operation of a kind."""
    k = r.kind
    base = f"{r.prefix}/namespaces/{{namespace}}/{r.plural}"
    ops = [
        (base, "get", "list", f"listNamespaced{k}", _LIST_PARAMS, False),
        (base, "post", "post", f"createNamespaced{k}", _WRITE_PARAMS, True),
        (base, "delete", "deletecollection", f"deleteCollectionNamespaced{k}", _LIST_PARAMS, True),
        (base + "/{name}", "get", "get", f"readNamespaced{k}", ["resourceVersion"], False),
        (base + "/{name}", "put", "put", f"replaceNamespaced{k}", _WRITE_PARAMS, True),
        (base + "/{name}", "patch", "patch", f"patchNamespaced{k}", _WRITE_PARAMS, True),
        (base + "/{name}", "delete", "delete", f"deleteNamespaced{k}", ["dryRun", "propagationPolicy"], True),
        (
            f"{r.prefix}/{r.plural}",
            "get",
            "list",
            f"list{k}ForAllNamespaces",
            _LIST_PARAMS,
            False,
        ),
    ]
    if r.has_status:
        ops += [
            (base + "/{name}/status", "get", "get", f"readNamespaced{k}Status", [], False),
            (base + "/{name}/status", "put", "put", f"replaceNamespaced{k}Status", _WRITE_PARAMS, True),
            (base + "/{name}/status", "patch", "patch", f"patchNamespaced{k}Status", _WRITE_PARAMS, True),
        ]
    return ops


def _param_type(name: str) -> str:
    return "integer" if name in _INT_PARAMS else "boolean" if name in _BOOL_PARAMS else "string"


def _path_params(path: str) -> list[str]:
    return [p for p in ("namespace", "name") if "{" + p + "}" in path]


def openapi_v2() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    schemas = _Schemas(defs, "#/definitions/", v3=False)
    paths: dict[str, Any] = {}
    for r in ALL:
        obj_ref = schemas.ref(r.object_type)
        defs[_def_name(r.object_type)]["x-kubernetes-group-version-kind"] = [_gvk(r)]
        schemas.ref(r.list_type)
        defs[_def_name(r.list_type)]["x-kubernetes-group-version-kind"] = [_gvk(r, r.list_kind)]
        for path, method, action, op_id, params, body in _operations(r):
            item = paths.setdefault(path, {})
            item["parameters"] = [{"name": p, "in": "path", "required": True, "type": "string"}
                                  for p in _path_params(path)]  # fmt: skip
            ps: list[dict[str, Any]] = [
                {"name": p, "in": "query", "type": _param_type(p), "uniqueItems": True} for p in params
            ]
            if body:
                ps.append({"name": "body", "in": "body", "required": method != "delete", "schema": obj_ref})
            item[method] = {
                "operationId": op_id,
                "consumes": _PATCH_TYPES if method == "patch" else ["application/json"],
                "produces": ["application/json"],
                "parameters": ps,
                "responses": {"200": {"description": "OK", "schema": obj_ref}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": _gvk(r),
            }
    return {"swagger": "2.0", "info": {"title": "kos-apiserver", "version": __version__}, "paths": paths,
            "definitions": defs}  # fmt: skip


def openapi_v3(group: str = GROUP, version: str = VERSION) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one group-version (what kubectl reads for field validation)."""
    schemas: dict[str, Any] = {}
    gen = _Schemas(schemas, "#/components/schemas/", v3=True)
    paths: dict[str, Any] = {}
    for r in ALL:
        if r.group != group or r.version != version:
            continue
        obj_ref = gen.ref(r.object_type)
        schemas[_def_name(r.object_type)]["x-kubernetes-group-version-kind"] = [_gvk(r)]
        gen.ref(r.list_type)
        schemas[_def_name(r.list_type)]["x-kubernetes-group-version-kind"] = [_gvk(r, r.list_kind)]
        for path, method, action, op_id, params, body in _operations(r):
            item = paths.setdefault(path, {})
            item["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                  for p in _path_params(path)]  # fmt: skip
            op: dict[str, Any] = {
                "operationId": op_id,
                "parameters": [
                    {"name": p, "in": "query", "schema": {"type": _param_type(p), "uniqueItems": True}} for p in params
                ],
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": obj_ref}}}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": _gvk(r),
            }
            if body:
                types_ = _PATCH_TYPES if method == "patch" else ["application/json"]
                op["requestBody"] = {"content": {t: {"schema": obj_ref} for t in types_}}
            item[method] = op
    return {
        "openapi": "3.0.0",
        "info": {"title": "kos-apiserver", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def openapi_v3_root(gv_docs: dict[str, bytes]) -> dict[str, Any]:
    """The `/openapi/v3` index: each `group/version` (key of `gv_docs`) with the hash of its document."""
    paths = {}
    for gv, doc in gv_docs.items():
        digest = hashlib.sha512(doc).hexdigest().upper()
        paths[f"apis/{gv}"] = {"serverRelativeURL": f"/openapi/v3/apis/{gv}?hash={digest}"}
    return {"paths": paths}
