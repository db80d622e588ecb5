"""Routing of the REST surface: which resource, namespace, name and subresource a request path names.

    /apis/network.example.com/v1alpha1/[namespaces/{ns}/]{plural}[/{name}[/status]]
    /apis/network.example.com/v1alpha1/watch/[namespaces/{ns}/]{plural}[/{name}]   (legacy watch paths)
    /apis/coordination.k8s.io/v1/...   the same shapes, for the Lease kind (`resources.PREFIXES`)

Paths arrive raw (percent-encoded) and are decoded by `urlparts`, once, for every front end.
"""

from __future__ import annotations

from typing import Any

from kos.api.errors import MethodNotAllowed, NotFound, StatusError
from kos.api.resources import BY_PLURAL, PREFIXES, Resource
from kos.api.types import GROUP, VERSION
from kos.apiserver import params, urlparts

PREFIX = f"/apis/{GROUP}/{VERSION}"
"""kos's own group-version; `OTHER_PREFIXES` are the other groups served (coordination.k8s.io/v1)."""
OTHER_PREFIXES = tuple(p for p in PREFIXES if p != PREFIX)


def split(path: str) -> tuple[str, str] | None:
    """(prefix, tail) of a raw path under one of the other group-versions' prefixes, or None."""
    for p in OTHER_PREFIXES:
        n = len(p)
        if len(path) > n + 1 and path[n] == "/" and path.startswith(p):
            return p, path[n + 1 :]
    return None


class ResourcePath:
    """A routed path: `resource`, `namespace` (None: every namespace), `name` ("" for a collection),
    `subresource` ("" or "status"), whether it is a `collection`, and whether it used a legacy `watch_path`."""

    __slots__ = ("collection", "name", "namespace", "resource", "subresource", "watch_path")

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.namespace: str | None = None
        self.name = ""
        self.subresource = ""
        self.collection = True
        self.watch_path = False


def wants_watch(method: str, tail: str, raw_query: str) -> bool:
    """Whether a request is a watch (a stream) rather than a call; malformed ones are calls (and get an error)."""
    if method != "GET":
        return False
    if tail.startswith("watch/"):
        return True
    if "watch" not in raw_query:
        return False
    try:
        return params.flag(urlparts.parse_query(raw_query), "watch")
    except StatusError:
        return False


def parse_path(tail: str, prefix: str = PREFIX) -> ResourcePath:
    """Route a raw (still percent-encoded) path after `prefix/` (a group-version's `PREFIX` or one of
    `OTHER_PREFIXES`); a malformed one, or a resource of another group, raises NotFound or BadRequest.

    An empty segment is never a wildcard: `namespaces//subnets` is 404, not every namespace's subnets (the
    cluster-wide form is the path without `namespaces/{ns}/`). One trailing `/` is allowed, as kube-apiserver
    allows it. A namespace or name that could not survive as one path segment ('.', '..', or one holding '/'
    or '%' once decoded) is 400, with kube-apiserver's words (k8s.io/apiserver/pkg/registry/generic/registry
    store.go NamespaceKeyFunc, k8s.io/apimachinery/pkg/api/validation/path IsValidPathSegmentName). Any other
    namespace is looked up as it is: one that cannot exist (`bug06\n`) holds nothing, and creating in it is 422.
    """
    parts = urlparts.path_segments(tail)
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # `subnets/`
    if "" in parts:
        raise NotFound(
            "the server could not find the requested resource: the path has an empty segment ('//'); to address"
            f" every namespace use {prefix}/{{plural}}"
        )
    watch_path = bool(parts) and parts[0] == "watch"
    if watch_path:
        parts = parts[1:]
    namespace = None
    if len(parts) >= 2 and parts[0] == "namespaces":
        namespace = urlparts.segment_name(parts[1], "Namespace")
        parts = parts[2:]
        if not parts:
            raise NotFound("the server could not find the requested resource (namespaces are implicit in kos)")
    if not parts:
        raise NotFound("the server could not find the requested resource")
    res = BY_PLURAL.get(parts[0])
    if res is None or res.prefix != prefix:
        raise NotFound(f'the server could not find the requested resource "{parts[0]}" in {prefix[6:]}')
    r = ResourcePath(res)
    r.namespace, r.watch_path = namespace, watch_path
    if len(parts) >= 2:
        if namespace is None:
            raise NotFound(f"{res.plural} are namespaced: use {prefix}/namespaces/{{namespace}}/{res.plural}/{{name}}")
        r.collection = False
        r.name = urlparts.segment_name(parts[1], "Name")
    if len(parts) >= 3:
        if parts[2] != "status" or not res.has_status or len(parts) > 3 or watch_path:
            raise NotFound(f"the server could not find the requested resource ({'/'.join(parts)})")
        r.subresource = "status"
    return r


def verb(method: str, query: Any, route: ResourcePath) -> str:
    """The Kubernetes verb of a request (get, list, watch, create, update, patch, delete, deletecollection);
    MethodNotAllowed (405) for a method the path does not take."""
    if route.watch_path:
        if method != "GET":
            raise MethodNotAllowed(f"{method} is not allowed on a watch path")
        return "watch"
    if route.collection:
        if method == "GET":
            return "watch" if params.flag(query, "watch") else "list"
        if method == "POST" and route.namespace is not None:
            return "create"
        if method == "DELETE" and route.namespace is not None:
            return "deletecollection"
        raise MethodNotAllowed(
            f"{method} is not allowed on {route.resource.prefix}/{route.resource.plural}"
            + ("" if route.namespace else " (use a namespaced path to create or delete)")
        )
    if method == "GET":
        return "watch" if params.flag(query, "watch") else "get"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE" and not route.subresource:
        return "delete"
    raise MethodNotAllowed(f"{method} is not allowed on this path")
