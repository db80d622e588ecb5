"""Implicit namespaces, served read-only as core/v1 Namespaces.

kos has no Namespace objects: any valid DNS-1123 label is a namespace, and it
"exists" (phase Active). Serving `GET /api/v1/namespaces/{ns}` and the list lets
kubectl and the Kubernetes clients behave as they do against a cluster (kubectl
looks a namespace up to explain a NotFound, `kubectl get ns` shows the
namespaces in use).
"""

from __future__ import annotations

from typing import Any

import msgspec

from kos.api import names
from kos.api.errors import MethodNotAllowed, NotFound
from kos.apiserver import urlparts
from kos.apiserver.cache import Cacher
from kos.apiserver.encoding import error_reply
from kos.http.messages import Reply, Request


def core_v1_resources() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [
            {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
             "verbs": ["get", "list"], "shortNames": ["ns"]},
        ],
    }  # fmt: skip


def _namespace(name: str) -> dict[str, Any]:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {},
        "status": {"phase": "Active"},
    }


class Namespaces:
    def __init__(self, cacher: Cacher) -> None:
        self.cacher = cacher

    def in_use(self) -> list[str]:
        found: set[str] = set()
        for cache in self.cacher.caches.values():
            found.update(e.namespace for e in cache.items.values())
        return sorted(found)

    async def list(self, request: Request) -> Reply:
        if request.method not in ("GET", "HEAD"):
            return error_reply(MethodNotAllowed("namespaces are implicit in kos and cannot be written"))
        body = {
            "kind": "NamespaceList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.cacher.revision)},
            "items": [_namespace(n) for n in self.in_use()],
        }
        return Reply(200, msgspec.json.encode(body))

    async def get(self, request: Request, raw_name: str) -> Reply:
        """`GET /api/v1/namespaces/{name}`, `raw_name` still percent-encoded."""
        name = urlparts.unquote(raw_name, "path")
        if request.method not in ("GET", "HEAD"):
            return error_reply(MethodNotAllowed("namespaces are implicit in kos and cannot be written"))
        if names.dns1123_label_problems(name):
            return error_reply(NotFound(f'namespaces "{name}" not found'))
        return Reply(200, msgspec.json.encode(_namespace(name)))
