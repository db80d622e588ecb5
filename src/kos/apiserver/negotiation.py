"""Content negotiation: which representation a client accepts, and which body types a verb takes.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` (server-side
printing) with plain JSON as a fallback; other clients ask for JSON. Protobuf
and YAML are not served: a client that accepts only those gets 406.
"""

from __future__ import annotations

import dataclasses

from kos.api.errors import NotAcceptable, UnsupportedMediaType

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclasses.dataclass(frozen=True, slots=True)
class Output:
    table: bool = False
    table_version: str = "v1"


OUTPUT_JSON = Output()


def parse_accept(header: str | None) -> Output:
    if not header:
        return OUTPUT_JSON
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        mime = fields[0].lower()
        params = {}
        for f in fields[1:]:
            k, _, v = f.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        if params.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        if mime not in (JSON, "application/*", "*/*"):
            continue
        as_ = params.get("as")
        if as_ is None:
            return OUTPUT_JSON
        if as_ == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return Output(table=True, table_version=params["v"])
        # other representations (PartialObjectMetadata, discovery documents): try the next entry
    raise NotAcceptable(
        f"none of the accepted media types ({header}) can be served; this server produces application/json and"
        " application/json;as=Table;v=v1;g=meta.k8s.io"
    )


def body_type(header: str | None) -> str:
    """The media type of a request body without parameters ('' when absent)."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def require_json_body(content_type: str) -> None:
    if content_type not in ("", JSON, "*/*"):
        raise UnsupportedMediaType(
            f"the body of the request was in an unknown format ({content_type}) - accepted media types include:"
            " application/json"
        )


def patch_kind(content_type: str) -> str:
    if content_type in (MERGE_PATCH, JSON_PATCH):
        return content_type
    if content_type == STRATEGIC_PATCH:
        raise UnsupportedMediaType(
            "strategic merge patch is not supported for network.example.com resources (as for custom resources);"
            " use a JSON merge patch (kubectl patch --type=merge) or a JSON patch (--type=json)"
        )
    if content_type == APPLY_PATCH:
        raise UnsupportedMediaType(
            "server-side apply is not supported; use client-side `kubectl apply` (without --server-side)"
        )
    raise UnsupportedMediaType(
        f"the body of the request was in an unknown format ({content_type or 'none given'}) - accepted media types"
        f" include: {JSON_PATCH}, {MERGE_PATCH}"
    )
