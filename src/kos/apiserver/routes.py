"""The apiserver's one HTTP application: which handler answers a request path.

    /apis/network.example.com/v1alpha1/...   calls (`handlers`), watches (`watchstream`),
                                              the watch multiplexer (`.../watchmux`, a WebSocket)
    /apis/coordination.k8s.io/v1/...         the same for Lease (no multiplexer)
    /api, /api/v1, /apis, /apis/{group}[/{version}], /version      discovery (`discovery`)
    /api/v1/namespaces[/{name}]               implicit namespaces (`namespaces`)
    /openapi/v2, /openapi/v3[/apis/{group}/{version}]              OpenAPI
    /healthz, /livez, /readyz, /metrics       probes

Paths are matched raw (percent-encoded), so a decoded spelling of the prefix is
not the prefix (404). Errors, including the HTTP layer's own refusals (431,
413, a malformed request), are Kubernetes `Status` objects. Every request is
authenticated first (`auth.gate`); calls and documents are then admitted under
the in-flight caps (`inflight`: 429 past them), watches and probes are not.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec

from kos.api import codec
from kos.api.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    StatusError,
    Unauthorized,
)
from kos.api.meta import status as status_object
from kos.api.resources import GROUP_VERSIONS
from kos.apiserver import discovery
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.authn.union import UnionAuthenticator
from kos.apiserver.auth.gate import ANONYMOUS_PATHS, Gate
from kos.apiserver.auth.user import UNSECURED, UserInfo
from kos.apiserver.cache import Cacher
from kos.apiserver.encoding import error_reply
from kos.apiserver.handlers import ResourceAPI
from kos.apiserver.inflight import READ_ONLY_METHODS, InFlight
from kos.apiserver.metrics import APIServerMetrics
from kos.apiserver.namespaces import Namespaces, core_v1_resources
from kos.apiserver.readiness import StoreReadiness
from kos.apiserver.resourcepath import PREFIX, split, wants_watch
from kos.apiserver.watchstream import WatchStreams
from kos.http.messages import Reply, Request, Response
from kos.http.probes import Probes

Handler = Callable[[Request], Awaitable[Response]]
MuxHandler = Callable[[Request, UserInfo], Awaitable[Response]]

_PREFIX_SLASH = PREFIX + "/"
_MUX = "watchmux"
_NAMESPACE = "/api/v1/namespaces/"
PROBE_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
"""Served whatever the load: not counted in flight (`kos.apiserver.inflight`)."""
_ANONYMOUS_TARGETS = frozenset(p.encode() for p in ANONYMOUS_PATHS)
_REFUSALS: dict[int, type[StatusError]] = {400: BadRequest, 401: Unauthorized, 413: RequestEntityTooLarge,
                                           431: RequestHeaderFieldsTooLarge, 500: InternalError}  # fmt: skip


class Routes:
    """The `kos.http` application of the apiserver (see the module docstring)."""

    def __init__(
        self,
        api: ResourceAPI,
        watches: WatchStreams,
        watchmux: MuxHandler,
        cacher: Cacher,
        metrics: APIServerMetrics,
        gate: Gate | None = None,
        inflight: InFlight | None = None,
    ) -> None:
        self.gate = gate or Gate.insecure()
        self.readiness: StoreReadiness | None = None
        """The store's reachability and the cache's lag, for /readyz (set by the server)."""
        self.inflight = inflight or InFlight(400, 200, metrics)
        self.api = api
        self.watches = watches
        self.watchmux = watchmux
        self.cacher = cacher
        self.metrics = metrics
        self.namespaces = Namespaces(cacher)
        self.exact: dict[str, Handler] = {}
        self._add_documents()
        self._add_probes()

    async def serve(self, request: Request) -> Response:
        """Authenticate (401 `Status` for bad or missing credentials), admit under the in-flight caps (429,
        `inflight`; watches and probes are not counted), then route; resource requests are authorized by
        their handlers (which parse the path), the others here."""
        gate = self.gate
        if gate.authenticator is None:  # --insecure: no coroutine to run on the hottest path
            user = UNSECURED
        else:
            try:
                user = await gate.authenticate(request)
            except StatusError as e:
                return error_reply(e)
        path = request.path
        if path.startswith(_PREFIX_SLASH) and len(path) > len(_PREFIX_SLASH):
            tail = path[len(_PREFIX_SLASH) :]
            method = request.method
            if tail == _MUX:
                return await self._watchmux(request, user)
            if method == "GET" and wants_watch(method, tail, request.query):
                return await self.watches.serve(request, tail, user)
            lim = self.inflight
            counts, kind = lim.counts, int(method not in READ_ONLY_METHODS)
            if counts[kind] >= lim.caps[kind] and (refused := lim.refuse(user, kind)) is not None:
                return refused
            counts[kind] += 1
            try:
                return await self.api.serve(request, tail, user)
            finally:
                counts[kind] -= 1
        if path in PROBE_PATHS:
            return await self._other(request, user, path)
        if (other := split(path)) is not None:  # another group's kind (Lease): no watch multiplexer there
            tail = other[1]
            if request.method == "GET" and wants_watch(request.method, tail, request.query):
                return await self.watches.serve(request, tail, user)
            return await self._limited(request, user, self.api.serve(request, tail, user))
        return await self._limited(request, user, self._other(request, user, path))

    async def _limited(self, request: Request, user: UserInfo, serve: Coroutine[Any, Any, Response]) -> Response:
        """`serve` under the in-flight cap (the calls of kos's own group count inline in `serve`, their hot path:
        one coroutine frame fewer); a refused call's coroutine is closed unrun."""
        lim = self.inflight
        counts, kind = lim.counts, int(request.method not in READ_ONLY_METHODS)
        if counts[kind] >= lim.caps[kind] and (refused := lim.refuse(user, kind)) is not None:
            serve.close()
            return refused
        counts[kind] += 1
        try:
            return await serve
        finally:
            counts[kind] -= 1

    async def _other(self, request: Request, user: UserInfo, path: str) -> Response:
        """A request outside the API group's prefix: documents, probes, the implicit namespaces."""
        handler = self.exact.get(path)
        namespace = None
        if handler is None:
            if path.startswith(_NAMESPACE) and "/" not in path[len(_NAMESPACE) :] and len(path) > len(_NAMESPACE):
                namespace = path[len(_NAMESPACE) :]
            else:
                return error_reply(NotFound(f"the server could not find the requested resource ({path})"))
        if self.gate.authorizer is not None:
            try:
                await self.gate.authorize(_path_attributes(user, request, namespace))
            except StatusError as e:
                return error_reply(e)
        if handler is not None:
            return await handler(request)
        assert namespace is not None
        return await self.namespaces.get(request, namespace)

    def check_head(self, target: bytes, headers: dict[bytes, bytes], peer_cert: bytes | None) -> tuple[int, str] | None:
        """Asked by the HTTP layer once the head of a request with a body is in: (401, message) when the request
        is certain to be refused as unauthenticated (`UnionAuthenticator.refusal_before_body`), so that its
        body is never read; else None."""
        union = self.gate.authenticator
        if not isinstance(union, UnionAuthenticator) or target.partition(b"?")[0] in _ANONYMOUS_TARGETS:
            return None
        refusal = union.refusal_before_body(headers, peer_cert)
        return None if refusal is None else (401, refusal)

    def refuse(self, status: int, message: str) -> Reply:
        cls = _REFUSALS.get(status)
        if cls is not None:
            return error_reply(cls(message))
        body = codec.encode(status_object(code=status, reason="ExpectationFailed" if status == 417 else "Unknown",
                                          message=message))  # fmt: skip
        return Reply(status, body)

    async def _watchmux(self, request: Request, user: UserInfo) -> Response:
        if request.method != "GET":
            return error_reply(MethodNotAllowed(f"{request.method} is not allowed on {request.path}"))
        if request.fields is None:
            return error_reply(BadRequest("the watch multiplexer is a WebSocket: send an Upgrade request"))
        refused = _refused_handshake(request)
        if refused is not None:  # answered here: a handshake aiohttp refuses leaves the connection its HTTP server's
            return refused
        return await self.watchmux(request, user)

    # --- documents and probes ------------------------------------------------------------------

    def _add_documents(self) -> None:
        enc = msgspec.json.encode
        ex = self.exact
        docs = [("/api/v1", core_v1_resources()), ("/apis", discovery.api_group_list()),
                ("/version", discovery.version_info())]  # fmt: skip
        for g, v in GROUP_VERSIONS:
            docs += [(f"/apis/{g}", discovery.api_group(g, v)), (f"/apis/{g}/{v}", discovery.api_resource_list(g, v))]
        for path, body in docs:
            ex[path] = ex[path + "/"] = _document(enc(body))
        ex["/apis/"] = ex["/apis"]
        ex["/api"] = ex["/api/"] = self._api_versions
        ex["/api/v1/namespaces"] = self.namespaces.list
        ex["/openapi/v2"] = _openapi(enc(discovery.openapi_v2()), "/openapi/v2", None)
        v3 = {f"{g}/{v}": enc(discovery.openapi_v3(g, v)) for g, v in GROUP_VERSIONS}
        ex["/openapi/v3"] = _document(enc(discovery.openapi_v3_root(v3)))
        for gv, doc in v3.items():
            ex[f"/openapi/v3/apis/{gv}"] = _openapi(doc, "/openapi/v3", {"Cache-Control": "public, immutable"})

    async def _api_versions(self, request: Request) -> Response:
        host = request.header(b"host") or ""
        return Reply(200, msgspec.json.encode(discovery.api_versions(host)))

    def _add_probes(self) -> None:
        """The probes every kos process serves (`kos.http.probes`); the apiserver is ready once its watch
        cache is loaded and has not failed. A method other than GET or HEAD is a Status 405 here."""
        probes = Probes(self.metrics.registry, readyz=self._not_ready)

        async def probe(request: Request) -> Response:
            return _probe(request) or probes.probe(request.path)

        self.exact.update(dict.fromkeys(PROBE_PATHS, probe))

    def _not_ready(self) -> str | None:
        c = self.cacher
        if not c.ready.is_set():
            return "watch cache not loaded"
        if c.failed is not None:
            return f"watch cache failed: {c.failed}"
        return self.readiness.problem() if self.readiness is not None else None


def _path_attributes(user: UserInfo, request: Request, namespace: str | None) -> Attributes:
    """A non-resource request's attributes; kos' implicit namespaces (`/api/v1/namespaces[/{name}]`) are
    resource requests on the core group's `namespaces`, as in Kubernetes."""
    verb = request.method.lower()
    if namespace is not None:
        verb = _ITEM_VERBS.get(verb, verb)
        return Attributes(user, verb, api_version="v1", resource="namespaces", name=namespace)
    if request.path == "/api/v1/namespaces":
        verb = _COLLECTION_VERBS.get(verb, verb)
        return Attributes(user, verb, api_version="v1", resource="namespaces")
    return Attributes(user, verb, resource_request=False, path=request.path)


_ITEM_VERBS = {"get": "get", "head": "get", "put": "update", "patch": "patch", "delete": "delete"}
_COLLECTION_VERBS = {"get": "list", "head": "list", "post": "create", "delete": "deletecollection"}
"""Kubernetes' verbs of a resource request by HTTP method (k8s.io/apiserver `request.RequestInfoFactory`), so a
403 and a SubjectAccessReview name `create`, not `post`."""


def _refused_handshake(request: Request) -> Reply | None:
    """The answer to an upgrade that is not a WebSocket handshake aiohttp would complete (RFC 6455 §4.2.1), or
    None; a version other than 13 is 426 with the one spoken (§4.4)."""
    upgrade = (request.header(b"upgrade") or "").lower()
    if "websocket" not in (t.strip() for t in upgrade.split(",")):
        return error_reply(BadRequest(f"the watch multiplexer upgrades only to websocket, not {upgrade!r}"))
    try:
        key = base64.b64decode(request.header(b"sec-websocket-key") or "", validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 16:
        return error_reply(BadRequest("Sec-WebSocket-Key must be 16 bytes in base64"))
    if request.header(b"sec-websocket-version") != "13":
        body = codec.encode(status_object(code=426, reason="BadRequest",
                                          message="the watch multiplexer speaks WebSocket version 13"))  # fmt: skip
        return Reply(426, body, {"Sec-WebSocket-Version": "13"})
    return None


def _probe(request: Request) -> Reply | None:
    if request.method in ("GET", "HEAD"):
        return None
    return error_reply(MethodNotAllowed(f"{request.method} is not allowed on {request.path}"))


def _document(data: bytes) -> Handler:
    """A fixed JSON document, for GET and HEAD."""

    async def handler(request: Request) -> Response:
        return _probe(request) or Reply(200, data)

    return handler


def _openapi(data: bytes, what: str, headers: dict[str, str] | None) -> Handler:
    """An OpenAPI document: JSON only (406 for a client that accepts none of it)."""

    async def handler(request: Request) -> Response:
        accept = request.header(b"accept") or ""
        if accept and "json" not in accept and "*/*" not in accept:
            return error_reply(NotAcceptable(f"only application/json is served for {what}"))
        return Reply(200, data, headers)

    return handler
