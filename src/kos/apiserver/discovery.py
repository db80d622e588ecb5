"""Discovery, `/version` and `/openapi/v2`: what kubectl and the Kubernetes clients read first.

Served from the resource table. The OpenAPI document describes each kind's
schema (derived from the msgspec types, so it cannot drift from them) and its
operations, including the `fieldValidation` parameter that tells kubectl to let
the server validate fields rather than validating on the client.
"""

from __future__ import annotations

import datetime
import hashlib
import types
import typing
from typing import Any

import msgspec

from kos import __version__
from kos.api import meta as api_meta
from kos.api.resources import ALL, Resource
from kos.api.types import API_VERSION, GROUP, VERSION

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


def _group() -> dict[str, Any]:
    gv = {"groupVersion": API_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group()]}


def api_group() -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", **_group()}


def api_resource_list() -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for r in ALL:
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
        "groupVersion": API_VERSION,
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


def _schema_of(t: Any, defs: dict[str, Any], ref_prefix: str) -> dict[str, Any]:
    origin = typing.get_origin(t)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return _schema_of(args[0], defs, ref_prefix) if len(args) == 1 else {}
    if t is str:
        return {"type": "string"}
    if t is bool:
        return {"type": "boolean"}
    if t is int:
        return {"type": "integer", "format": "int64"}
    if t is datetime.datetime:
        return {"type": "string", "format": "date-time"}
    if origin is list:
        (item,) = typing.get_args(t)
        return {"type": "array", "items": _schema_of(item, defs, ref_prefix)}
    if origin is dict:
        _, value = typing.get_args(t)
        return {"type": "object", "additionalProperties": _schema_of(value, defs, ref_prefix)}
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        name = _def_name(t)
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            props: dict[str, Any] = {}
            required: list[str] = []
            hints = typing.get_type_hints(t)
            for f in msgspec.structs.fields(t):
                props[f.encode_name] = _schema_of(hints[f.name], defs, ref_prefix)
                if f.required:
                    required.append(f.encode_name)
            d: dict[str, Any] = {"type": "object", "properties": props}
            if t.__doc__ and not t.__doc__.startswith(t.__name__ + "("):
                d["description"] = t.__doc__.strip().splitlines()[0]
            if required:
                d["required"] = required
            defs[name] = d
        return {"$ref": f"{ref_prefix}{name}"}
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _def_name(t: type) -> str:
    if t.__module__ == api_meta.__name__:
        return f"io.k8s.apimachinery.pkg.apis.meta.v1.{t.__name__}"
    return f"com.example.network.{VERSION}.{t.__name__}"


def _gvk(r: Resource, kind: str | None = None) -> dict[str, str]:
    return {"group": GROUP, "version": VERSION, "kind": kind or r.kind}


_PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json"]
_WRITE_PARAMS = ["dryRun", "fieldManager", "fieldValidation"]
_LIST_PARAMS = ["labelSelector", "fieldSelector", "resourceVersion", "resourceVersionMatch", "continue", "limit",
                "timeoutSeconds", "watch", "allowWatchBookmarks", "sendInitialEvents"]  # fmt: skip
_INT_PARAMS = {"limit", "timeoutSeconds"}
_BOOL_PARAMS = {"watch", "allowWatchBookmarks", "sendInitialEvents"}


def _operations(r: Resource) -> list[tuple[str, str, str, str, list[str], bool]]:
    """(path, method, action, operationId, query parameters, has a body) for every operation of a kind."""
    k = r.kind
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{r.plural}"
    ops = [
        (base, "get", "list", f"listNamespaced{k}", _LIST_PARAMS, False),
        (base, "post", "post", f"createNamespaced{k}", _WRITE_PARAMS, True),
        (base, "delete", "deletecollection", f"deleteCollectionNamespaced{k}", _LIST_PARAMS, True),
        (base + "/{name}", "get", "get", f"readNamespaced{k}", ["resourceVersion"], False),
        (base + "/{name}", "put", "put", f"replaceNamespaced{k}", _WRITE_PARAMS, True),
        (base + "/{name}", "patch", "patch", f"patchNamespaced{k}", _WRITE_PARAMS, True),
        (base + "/{name}", "delete", "delete", f"deleteNamespaced{k}", ["dryRun", "propagationPolicy"], True),
        (
            f"/apis/{GROUP}/{VERSION}/{r.plural}",
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
    prefix = "#/definitions/"
    paths: dict[str, Any] = {}
    for r in ALL:
        obj_ref = _schema_of(r.object_type, defs, prefix)
        defs[_def_name(r.object_type)]["x-kubernetes-group-version-kind"] = [_gvk(r)]
        _schema_of(r.list_type, defs, prefix)
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


def openapi_v3() -> dict[str, Any]:
    """The OpenAPI 3.0 document of network.example.com/v1alpha1 (what kubectl reads for field validation)."""
    schemas: dict[str, Any] = {}
    prefix = "#/components/schemas/"
    paths: dict[str, Any] = {}
    for r in ALL:
        obj_ref = _schema_of(r.object_type, schemas, prefix)
        schemas[_def_name(r.object_type)]["x-kubernetes-group-version-kind"] = [_gvk(r)]
        _schema_of(r.list_type, schemas, prefix)
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


def openapi_v3_root(gv_doc: bytes) -> dict[str, Any]:
    digest = hashlib.sha512(gv_doc).hexdigest().upper()
    return {
        "paths": {f"apis/{GROUP}/{VERSION}": {"serverRelativeURL": f"/openapi/v3/apis/{GROUP}/{VERSION}?hash={digest}"}}
    }
