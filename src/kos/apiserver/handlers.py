"""The REST surface: Kubernetes URL layout, verbs, query parameters and bodies, for every kind.

    /apis/network.example.com/v1alpha1/[namespaces/{ns}/]{plural}[/{name}[/status]]
    /apis/network.example.com/v1alpha1/watch/[namespaces/{ns}/]{plural}[/{name}]   (legacy watch paths)

Handlers are generic, driven by the resource table; they parse and check the
request (every malformed input becomes a `Status` with the right code and
changes nothing), call the kind's `Registry`, and encode the answer — as JSON,
or as a Table when kubectl asks for one. Watches stream newline-delimited JSON
events from the watcher's buffer of pre-encoded lines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import msgspec
from aiohttp import web

from kos.api import codec, errors, field
from kos.api.errors import BadRequest, MethodNotAllowed, NotFound, RequestEntityTooLarge, StatusError
from kos.api.meta import DeleteOptions
from kos.api.resources import BY_PLURAL, Resource
from kos.api.selectors import FieldRequirement, FieldSelector
from kos.api.types import API_VERSION, GROUP, VERSION
from kos.apiserver import listoptions, negotiation, params, patch, table, urlparts
from kos.apiserver.cache import Entry
from kos.apiserver.limits import ClientQuota
from kos.apiserver.limits import watch_quota as watch_quota_of
from kos.apiserver.metrics import APIServerMetrics
from kos.apiserver.registry import DeleteRequest, ListResult, Registry, WatchOptions
from kos.util.clock import Clock

log = logging.getLogger(__name__)

PREFIX = f"/apis/{GROUP}/{VERSION}"
DEFAULT_WATCH_TIMEOUT = (1800, 3600)
SINK_LIMIT = 1 << 20
"""Bytes a watch connection's socket buffer may hold before events wait in the watcher instead."""
_AT = " - at `$"
"""How msgspec ends an error message with the JSON path of the offending value."""


def status_response(err: StatusError) -> web.Response:
    return web.Response(
        body=codec.encode(err.to_status()),
        status=err.code,
        content_type="application/json",
        headers=_retry(err),
    )


def _retry(err: StatusError) -> dict[str, str]:
    if err.details is not None and err.details.retry_after_seconds:
        return {"Retry-After": str(err.details.retry_after_seconds)}
    return {}


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


class Call:
    """One request/response call (everything but a watch), whichever HTTP front end parsed it."""

    __slots__ = ("accept", "content_type", "method", "raw_query", "read_body", "tail")

    def __init__(
        self,
        method: str,
        tail: str,
        raw_query: str,
        accept: str | None,
        content_type: str | None,
        read_body: Callable[[], Awaitable[bytes]],
    ) -> None:
        self.method = method
        self.tail = tail
        """The raw (percent-encoded) path after `PREFIX/`: `urlparts` decodes it."""
        self.raw_query = raw_query
        """The raw query string (after `?`): `urlparts` decodes it."""
        self.accept = accept
        self.content_type = content_type
        self.read_body = read_body


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str] | None = None
    """Headers besides Content-Type (always application/json) and Content-Length."""


def error_reply(err: StatusError) -> Reply:
    return Reply(err.code, codec.encode(err.to_status()), _retry(err) or None)


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


class _Route:
    __slots__ = ("collection", "name", "namespace", "resource", "subresource", "watch_path")

    def __init__(self) -> None:
        self.resource: Resource | None = None
        self.namespace: str | None = None
        self.name = ""
        self.subresource = ""
        self.collection = True
        self.watch_path = False


def _parse_path(tail: str) -> _Route:
    """Route a raw (still percent-encoded) path after `PREFIX/`; a malformed one raises NotFound or BadRequest.

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
            f" every namespace use {PREFIX}/{{plural}}"
        )
    r = _Route()
    if parts and parts[0] == "watch":
        r.watch_path = True
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] == "namespaces":
        r.namespace = urlparts.segment_name(parts[1], "Namespace")
        parts = parts[2:]
        if not parts:
            raise NotFound("the server could not find the requested resource (namespaces are implicit in kos)")
    if not parts:
        raise NotFound("the server could not find the requested resource")
    res = BY_PLURAL.get(parts[0])
    if res is None:
        raise NotFound(f'the server could not find the requested resource "{parts[0]}" in {GROUP}/{VERSION}')
    r.resource = res
    if len(parts) >= 2:
        if r.namespace is None:
            raise NotFound(f"{res.plural} are namespaced: use {PREFIX}/namespaces/{{namespace}}/{res.plural}/{{name}}")
        r.collection = False
        r.name = urlparts.segment_name(parts[1], "Name")
    if len(parts) >= 3:
        if parts[2] != "status" or not res.has_status or len(parts) > 3 or r.watch_path:
            raise NotFound(f"the server could not find the requested resource ({'/'.join(parts)})")
        r.subresource = "status"
    return r


def _named(fs: FieldSelector, name: str) -> FieldSelector:
    """A watch of one object (`.../{plural}/{name}`): its field selector may only repeat the name.

    As get.go ListResource: no selector selects the name; one that requires `metadata.name` to be this
    name is kept; any other is 400. Built as a requirement, not parsed, so a name cannot inject terms.
    """
    if fs.empty:
        return FieldSelector((FieldRequirement("metadata.name", "=", name),))
    for r in fs.requirements:
        if r.field == "metadata.name" and r.op == "=":
            if r.value == name:
                return fs
            break
    raise BadRequest("fieldSelector metadata.name doesn't match requested name")


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


_MALFORMED = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def decode_object(res: Resource, body: bytes, mode: str, name_hint: str = "") -> tuple[Any, list[str]]:
    """Decode a request body into the kind's type; (object, warnings). Malformed input raises a StatusError."""
    obj: Any = None
    try:
        obj = codec.decode(body, res.object_type)
        if obj.kind == res.kind and obj.api_version == API_VERSION:
            return obj, []
        first_error = ""
    except msgspec.ValidationError as e:
        first_error = str(e)
    except _MALFORMED as e:
        raise BadRequest(f"the request body is not valid JSON: {_reason(e)}") from None
    try:
        raw = msgspec.json.decode(body)
    except _MALFORMED as e:
        raise BadRequest(f"the request body is not valid JSON: {_reason(e)}") from None
    if not isinstance(raw, dict):
        raise BadRequest(f"the request body must be a JSON object (a {res.kind}), not {type(raw).__name__}")
    av, kind = raw.get("apiVersion"), raw.get("kind")
    if av is not None and av != API_VERSION:
        raise BadRequest(f"the API version in the data ({av}) does not match the expected API version ({API_VERSION})")
    if kind is not None and kind != res.kind:
        raise BadRequest(
            f'{kind} in version "{VERSION}" cannot be handled as a {res.kind}: the kind must be {res.kind}'
        )
    warnings: list[str] = []
    if first_error.startswith("Object contains unknown field"):
        try:
            obj, dropped = codec.decode_lenient(body, res.object_type)
        except msgspec.ValidationError as e2:
            first_error = str(e2)
            dropped = []
            obj = None
        if dropped and mode == "Strict":
            raise BadRequest("strict decoding error: " + ", ".join(f'unknown field "{d}"' for d in dropped))
        if mode == "Warn":
            warnings = [f'unknown field "{d}"' for d in dropped]
        if obj is not None:
            return obj, warnings
    detail, path = _split_error(first_error)
    meta = raw.get("metadata")
    name = (meta.get("name") if isinstance(meta, dict) else None) or name_hint
    raise errors.invalid(res.kind, str(name or ""), [field.invalid(path or "<body>", _value_at(raw, path), detail)])


def _reason(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "it is nested too deeply"
    if isinstance(e, UnicodeDecodeError):
        return f"it is not valid UTF-8 (at byte {e.start})"
    return str(e)


def warning_header(warnings: list[str]) -> dict[str, str] | None:
    """An RFC 7234 `Warning` header: code 299, agent '-', each text a quoted string."""
    if not warnings:
        return None
    quoted = ['299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in warnings]
    return {"Warning": ", ".join(quoted)}


class ResourceAPI:
    def __init__(
        self,
        registries: dict[str, Registry],
        metrics: APIServerMetrics,
        clock: Clock,
        *,
        max_body: int,
        watch_quota: ClientQuota | None = None,
    ) -> None:
        self.registries = registries
        self.watch_quota = watch_quota or watch_quota_of(1 << 62)
        self.metrics = metrics
        self.clock = clock
        self.max_body = max_body
        self._inflight_mutating = metrics.inflight.labels("mutating")
        self._inflight_read = metrics.inflight.labels("readOnly")
        self._req_children: dict[tuple[str, str, str, int], Any] = {}
        self._lat_children: dict[tuple[str, str, str], Any] = {}

    # --- entry point -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp front end: watches stream from here; calls go through `serve`."""
        url = request.rel_url
        raw_path, raw_query = url.raw_path, url.raw_query_string
        if not raw_path.startswith(PREFIX + "/"):  # the router matched a decoded spelling of the prefix
            return status_response(NotFound(f"the server could not find the requested resource ({raw_path})"))
        tail = raw_path[len(PREFIX) + 1 :]
        if wants_watch(request.method, tail, raw_query):
            return await self._watch_request(request, tail, raw_query)
        h = request.headers
        call = Call(request.method, tail, raw_query, h.get("Accept"), h.get("Content-Type"),
                    lambda: self._body(request))  # fmt: skip
        reply = await self.serve(call)
        return web.Response(body=reply.body, status=reply.status, content_type="application/json",
                            headers=reply.headers)  # fmt: skip

    async def serve(self, call: Call) -> Reply:
        """Serve one call: parse and check it, run it against the registry, encode the answer or the error."""
        t0 = time.perf_counter()
        verb, resource, sub = call.method.lower(), "", ""
        inflight = self._inflight_mutating if call.method not in ("GET", "HEAD") else self._inflight_read
        inflight.inc()
        code = 500
        try:
            route = _parse_path(call.tail)
            assert route.resource is not None
            resource, sub = route.resource.plural, route.subresource
            query = urlparts.parse_query(call.raw_query)
            verb = self._verb(call.method, query, route)
            if verb == "watch":  # the front ends send watches elsewhere; this is a malformed one
                raise BadRequest("a watch must be a GET with watch=true or a /watch/ path")
            reply = await self._dispatch(call, query, route, verb)
            code = reply.status
            return reply
        except StatusError as e:
            code = e.code
            return error_reply(e)
        except (asyncio.CancelledError, ConnectionResetError):
            code = 499
            raise
        except Exception as e:
            log.exception("internal error serving %s %s", call.method, call.tail)
            err = errors.InternalError(f"an internal error occurred: {type(e).__name__}: {e}")
            return error_reply(err)
        finally:
            inflight.dec()
            self._observe(verb, resource, sub, code, time.perf_counter() - t0)

    async def _watch_request(self, request: web.Request, tail: str, raw_query: str) -> web.StreamResponse:
        t0 = time.perf_counter()
        resource = ""
        try:
            route = _parse_path(tail)
            assert route.resource is not None
            resource = route.resource.plural
            query = urlparts.parse_query(raw_query)
            self._verb(request.method, query, route)
            return await self._watch(request, query, route, t0)
        except StatusError as e:
            self._observe("watch", resource, "", e.code, time.perf_counter() - t0)
            return status_response(e)

    def _observe(self, verb: str, resource: str, sub: str, code: int, seconds: float) -> None:
        k = (verb, resource, sub, code)
        c = self._req_children.get(k)
        if c is None:
            c = self._req_children[k] = self.metrics.requests.labels(verb, resource, sub, str(code))
        c.inc()
        k2 = (verb, resource, sub)
        h = self._lat_children.get(k2)
        if h is None:
            h = self._lat_children[k2] = self.metrics.latency.labels(verb, resource, sub)
        h.observe(seconds)

    def _verb(self, m: str, query: Any, route: _Route) -> str:
        if route.watch_path:
            if m != "GET":
                raise MethodNotAllowed(f"{m} is not allowed on a watch path")
            return "watch"
        if route.collection:
            if m == "GET":
                return "watch" if params.flag(query, "watch") else "list"
            if m == "POST" and route.namespace is not None:
                return "create"
            if m == "DELETE" and route.namespace is not None:
                return "deletecollection"
            raise MethodNotAllowed(
                f"{m} is not allowed on {PREFIX}/{route.resource.plural if route.resource else ''}"
                + ("" if route.namespace else " (use a namespaced path to create or delete)")
            )
        if m == "GET":
            return "watch" if params.flag(query, "watch") else "get"
        if m == "PUT":
            return "update"
        if m == "PATCH":
            return "patch"
        if m == "DELETE" and not route.subresource:
            return "delete"
        raise MethodNotAllowed(f"{m} is not allowed on this path")

    async def _body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise RequestEntityTooLarge(f"Request entity too large: limit is {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.read(1 << 16)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_body:
                raise RequestEntityTooLarge(f"Request entity too large: limit is {self.max_body} bytes")
            chunks.append(chunk)

    # --- verbs -------------------------------------------------------------------------------

    async def _dispatch(self, call: Call, q: Any, route: _Route, verb: str) -> Reply:
        res = route.resource
        assert res is not None
        reg = self.registries[res.plural]
        out = negotiation.parse_accept(call.accept)
        ns = route.namespace
        if verb == "list":
            result = await reg.list_objects(ns, listoptions.list_options(q, res))
            return self._list_response(res, result, out, params.include_object(q, out.table))
        if verb == "get":
            e = await reg.get(ns or "", route.name, resource_version=params.rv_param(q))
            return self._object_response(res, e, out, params.include_object(q, out.table))
        if verb == "create":
            dry, mode = params.write_options(q, "CreateOptions")
            negotiation.require_json_body(negotiation.body_type(call.content_type))
            obj, warnings = decode_object(res, await call.read_body(), mode)
            e = await reg.create(ns or "", obj, dry_run=dry)
            return self._object_response(res, e, out, "Metadata", status=201, warnings=warnings)
        if verb == "update":
            dry, mode = params.write_options(q, "UpdateOptions")
            negotiation.require_json_body(negotiation.body_type(call.content_type))
            obj, warnings = decode_object(res, await call.read_body(), mode, route.name)
            e = await reg.update(ns or "", route.name, obj, subresource=route.subresource or None, dry_run=dry)
            return self._object_response(res, e, out, "Metadata", warnings=warnings)
        if verb == "patch":
            return await self._patch(call, q, route, reg, out)
        if verb == "delete":
            req = await self._delete_request(call, q)
            e, done = await reg.delete(ns or "", route.name, req)
            return self._object_response(res, e, out, "Metadata", status=200 if done else 202)
        if verb == "deletecollection":
            opts = listoptions.list_options(q, res)
            req = await self._delete_request(call, q)
            deleted = await reg.delete_collection(ns, opts, req)
            return self._list_response(res, ListResult(deleted, reg.cacher.revision), out, "Metadata")
        raise MethodNotAllowed(f"{verb} is not supported")

    async def _patch(self, call: Call, q: Any, route: _Route, reg: Registry, out: negotiation.Output) -> Reply:
        res = reg.resource
        kind = negotiation.patch_kind(negotiation.body_type(call.content_type))
        body = await call.read_body()
        try:
            doc = msgspec.json.decode(body)
        except _MALFORMED as e:
            raise BadRequest(f"the patch is not valid JSON: {_reason(e)}") from None
        dry, mode = params.write_options(q, "PatchOptions")
        warnings: list[str] = []
        # `apply` may run once per write attempt, each time on a fresh patch: applying hands its values over
        if kind == negotiation.MERGE_PATCH:
            patch.check_merge_patch(doc)

            def apply(target: dict[str, Any]) -> dict[str, Any]:
                result: dict[str, Any] = patch.apply_merge_patch(target, msgspec.json.decode(body))
                return result
        else:
            patch.check_json_patch(doc)

            def apply(target: dict[str, Any]) -> dict[str, Any]:
                ops = patch.json_patch_ops(msgspec.json.decode(body))
                result: dict[str, Any] = patch.apply_json_patch(target, ops, res.kind, route.name,
                                                                max_copy_bytes=self.max_body)  # fmt: skip
                return result

        def decode(data: bytes) -> Any:
            if len(data) > self.max_body:  # as large as no create or update could make it
                raise patch.result_too_large(len(data), self.max_body)
            obj, w = decode_object(res, data, mode, route.name)
            warnings[:] = w
            return obj

        entry = await reg.patch(route.namespace or "", route.name, apply, decode,
                                subresource=route.subresource or None, dry_run=dry)  # fmt: skip
        return self._object_response(res, entry, out, "Metadata", warnings=warnings)

    async def _delete_request(self, call: Call, q: Any) -> DeleteRequest:
        """DeleteOptions as kube-apiserver reads them (handlers/delete.go): from the body when there is one, else
        from the query (never a mix); a value that does not decode is 400, then ValidateDeleteOptions' rules
        (both orphanDependents and propagationPolicy, an unknown policy, a dryRun other than All) are 422."""
        body = await call.read_body()
        if body.strip():
            try:
                opts = codec.decode(body, DeleteOptions)
            except (*_MALFORMED, msgspec.ValidationError) as err:
                raise BadRequest(f"the request body is not valid DeleteOptions: {_reason(err)}") from None
            grace = opts.grace_period_seconds
            if grace is not None and not -params.INT64_MAX - 1 <= grace <= params.INT64_MAX:
                raise BadRequest("invalid value for gracePeriodSeconds: out of range for a 64-bit integer")
        else:
            grace_text = q.get("gracePeriodSeconds")
            opts = DeleteOptions(
                grace_period_seconds=None if grace_text is None else params.parse_int64(
                    grace_text, "gracePeriodSeconds", minimum=-params.INT64_MAX - 1),
                orphan_dependents=params.optional_flag(q, "orphanDependents"),
                propagation_policy=q.get("propagationPolicy"),
                dry_run=tuple(q.getall("dryRun", [])),
            )  # fmt: skip
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
        dry = bool(opts.dry_run)
        return DeleteRequest(
            uid=pre.uid if pre else None,
            resource_version=pre.resource_version if pre else None,
            propagation_policy=policy,
            dry_run=dry,
        )

    # --- encoding ----------------------------------------------------------------------------

    def _object_response(
        self,
        res: Resource,
        e: Entry,
        out: negotiation.Output,
        include: str,
        *,
        status: int = 200,
        warnings: list[str] | None = None,
    ) -> Reply:
        headers = warning_header(warnings or [])
        if out.table:
            body = table.render_table(res, [e], resource_version=e.rev, now=self.clock.now(),
                                      version=out.table_version, include_object=include)  # fmt: skip
            return Reply(status, body, headers)
        return Reply(status, e.json(), headers)

    def _list_response(self, res: Resource, result: ListResult, out: negotiation.Output, include: str) -> Reply:
        if out.table:
            body = table.render_table(
                res, result.entries, resource_version=result.revision, now=self.clock.now(),
                version=out.table_version, include_object=include, continue_token=result.continue_token,
                remaining=result.remaining,
            )  # fmt: skip
            return Reply(200, body)
        meta = b'{"resourceVersion":"' + str(result.revision).encode() + b'"'
        if result.continue_token:
            meta += b',"continue":"' + result.continue_token.encode() + b'"'
        if result.remaining is not None:
            meta += b',"remainingItemCount":' + str(result.remaining).encode()
        meta += b"}"
        body = b"".join([
            b'{"apiVersion":"', API_VERSION.encode(), b'","kind":"', res.list_kind.encode(),
            b'","metadata":', meta, b',"items":[', b",".join(e.json() for e in result.entries), b"]}",
        ])  # fmt: skip
        return Reply(200, body)

    # --- watch -------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, q: Any, route: _Route, t0: float) -> web.StreamResponse:
        res = route.resource
        assert res is not None
        reg = self.registries[res.plural]
        out = negotiation.parse_accept(request.headers.get("Accept"))
        opts, timeout = listoptions.watch_options(q, res)
        if not route.collection:
            opts = dataclasses.replace(opts, field_selector=_named(opts.field_selector, route.name))
        if timeout is None:
            timeout = random.randint(*DEFAULT_WATCH_TIMEOUT)
        render = None
        if out.table:
            include = params.include_object(q, True)
            version = out.table_version

            def render(typ: str, entry: Entry) -> bytes:
                body = table.render_table(res, [entry], resource_version=entry.rev, now=self.clock.now(),
                                          version=version, include_object=include)  # fmt: skip
                return b'{"type":"' + typ.encode() + b'","object":' + body + b"}\n"

        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                        "Cache-Control": "no-cache, private"})  # fmt: skip
        resp.enable_chunked_encoding()
        client = request.remote or ""
        self.watch_quota.acquire(client)
        try:
            return await self._stream(request, resp, reg, route.namespace, opts, render, timeout, t0)
        finally:
            self.watch_quota.release(client)

    async def _stream(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        reg: Registry,
        namespace: str | None,
        opts: WatchOptions,
        render: Any,
        timeout: int,
        t0: float,
    ) -> web.StreamResponse:
        res = reg.resource
        try:
            w = await reg.watch(namespace, opts, render=render)
        except errors.Gone as gone:  # Kubernetes reports a too-old watch as an ERROR event in a 200 stream
            await resp.prepare(request)
            await resp.write(b'{"type":"ERROR","object":' + codec.encode(gone.to_status()) + b"}\n")
            await resp.write_eof()
            self._observe("watch", res.plural, "", 200, time.perf_counter() - t0)
            return resp
        gauge = self.metrics.watchers.labels(res.plural)
        gauge.inc()
        timer = w.expire_after(timeout)
        try:
            await resp.prepare(request)
            self._observe("watch", res.plural, "", 200, time.perf_counter() - t0)
            transport = request.transport

            def sink(lines: list[bytes], size: int) -> bool:
                if transport is None or transport.is_closing() or transport.get_write_buffer_size() > SINK_LIMIT:
                    return False
                # one HTTP chunk, one write: uvloop's writelines of a few small buffers measured ~5% more CPU per
                # event in the fan-out benchmark than joining them here
                transport.write(b"%x\r\n%b\r\n" % (size, b"".join(lines)))
                return True

            while True:
                if w.buffer:  # backlog (or events pushed before the response started): write with flow control
                    await resp.write(w.take())
                    continue
                if w.closed:
                    break
                w.sink = sink
                w.wakeup.clear()
                await w.wakeup.wait()
                w.sink = None
            if w.close_reason:
                self.metrics.slow_watchers.labels(res.plural).inc()
                log.info("closed a %s watch: %s", res.plural, w.close_reason)
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            timer.cancel()
            reg.stop_watch(w)
            gauge.dec()
            self.metrics.watch_events.labels(res.plural).inc(w.sent_events)
            self.metrics.watch_bytes.labels(res.plural).inc(w.sent_bytes)
        return resp
