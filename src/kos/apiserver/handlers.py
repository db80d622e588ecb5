"""Verb dispatch of the REST surface: a call (everything but a watch) against the kind's `Registry`.

Handlers are generic, driven by the resource table: a request is routed
(`resourcepath`), authorized on a secure server (`kos.apiserver.auth`: 403 before the
body is decoded; a write's admission check goes to the registry with it),
its query and body checked (`listoptions`, `params`,
`decoding`; every malformed input becomes a `Status` with the right code and
changes nothing), the registry called, and the answer encoded (`encoding`) — as
JSON, or as a Table when kubectl asks for one. Watches stream from
`watchstream`; both count requests and latency through `RequestMetrics`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from kos.api import errors
from kos.api.errors import BadRequest, MethodNotAllowed, StatusError
from kos.apiserver import listoptions, negotiation, params, patch, resourcepath, urlparts
from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.gate import Admit, Gate
from kos.apiserver.auth.user import UNSECURED, UserInfo
from kos.apiserver.decoding import decode_object, decode_patch, delete_request
from kos.apiserver.encoding import error_reply, list_reply, object_reply
from kos.apiserver.metrics import APIServerMetrics
from kos.apiserver.registry import ListResult, Registry
from kos.apiserver.resourcepath import ResourcePath
from kos.http.messages import Reply, Request
from kos.util.clock import Clock
from kos.util.log import get_logger

log = get_logger(__name__)

_READS = frozenset({"get", "list", "watch"})


class RequestMetrics:
    """`apiserver_request_total` and `apiserver_request_duration_seconds`, with the label children cached
    (looking one up by labels costs more than the observation)."""

    def __init__(self, metrics: APIServerMetrics) -> None:
        self.metrics = metrics
        self._req_children: dict[tuple[str, str, str, int], Any] = {}
        self._lat_children: dict[tuple[str, str, str], Any] = {}

    def observe(self, verb: str, resource: str, sub: str, code: int, seconds: float) -> None:
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


class ResourceAPI:
    """Serves calls on `PREFIX/...`: `serve(request, tail)` → a `Reply` (an error is a Status reply)."""

    def __init__(
        self,
        registries: dict[str, Registry],
        metrics: APIServerMetrics,
        clock: Clock,
        *,
        max_body: int,
        observer: RequestMetrics | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.registries = registries
        self.gate = gate or Gate.insecure()
        """Authorization and admission of each call (`kos.apiserver.auth`); nothing is judged when insecure."""
        self.metrics = metrics
        self.clock = clock
        self.max_body = max_body
        self.observer = observer or RequestMetrics(metrics)
        self._inflight_mutating = metrics.inflight.labels("mutating")
        self._inflight_read = metrics.inflight.labels("readOnly")

    async def serve(self, req: Request, tail: str, user: UserInfo = UNSECURED) -> Reply:
        """Serve one call: `tail` is the raw path after `PREFIX/`. Never raises a StatusError: it is the reply."""
        t0 = time.perf_counter()
        method = req.method
        verb, resource, sub = method.lower(), "", ""
        inflight = self._inflight_mutating if method not in ("GET", "HEAD") else self._inflight_read
        inflight.inc()
        code = 500
        try:
            route = resourcepath.parse_path(tail, req.path[: -len(tail) - 1])
            resource, sub = route.resource.plural, route.subresource
            query = urlparts.parse_query(req.query)
            verb = resourcepath.verb(method, query, route)
            if verb == "watch":  # the router sends watches elsewhere; this is a malformed one
                raise BadRequest("a watch must be a GET with watch=true or a /watch/ path")
            admit = None
            gate = self.gate
            if gate.authorizer is not None:  # (an attribute test is all an insecure server pays)
                r = route.resource
                attrs = Attributes(user, verb, api_group=r.group, api_version=r.version, resource=resource,
                                   subresource=sub, namespace=route.namespace or "", name=route.name)  # fmt: skip
                await gate.authorize(attrs)
                if verb not in _READS:
                    admit = gate.admission(attrs)
            reply = await self._dispatch(req, query, route, verb, admit)
            code = reply.status
            return reply
        except StatusError as e:
            code = e.code
            return error_reply(e)
        except (asyncio.CancelledError, ConnectionResetError):
            code = 499
            raise
        except Exception as e:
            log.exception("internal error serving a request", method=method, path=tail)
            return error_reply(errors.InternalError(f"an internal error occurred: {type(e).__name__}: {e}"))
        finally:
            inflight.dec()
            self.observer.observe(verb, resource, sub, code, time.perf_counter() - t0)

    # --- verbs -------------------------------------------------------------------------------

    async def _dispatch(self, req: Request, q: Any, route: ResourcePath, verb: str, admit: Admit | None) -> Reply:
        """Serve `verb`; a write is also judged by `admit` (admission, after authorization): an update or patch
        with its old and new object on each attempt, a create with (new, None), a deletion with (None, None)."""
        res = route.resource
        reg = self.registries[res.plural]
        out = negotiation.parse_accept(req.header(b"accept"))
        ns, clock = route.namespace, self.clock
        if verb == "list":
            result = await reg.list_objects(ns, listoptions.list_options(q, res))
            return list_reply(res, result, out, params.include_object(q, out.table), clock)
        if verb == "get":
            e = await reg.get(ns or "", route.name, resource_version=params.rv_param(q))
            return object_reply(res, e, out, params.include_object(q, out.table), clock)
        if verb == "create":
            dry, mode = params.write_options(q, "CreateOptions")
            negotiation.require_json_body(negotiation.body_type(req.header(b"content-type")))
            obj, warnings = decode_object(res, req.body, mode)
            if admit is not None:
                admit(obj, None)
            e = await reg.create(ns or "", obj, dry_run=dry)
            return object_reply(res, e, out, "Metadata", clock, status=201, warnings=warnings)
        if verb == "update":
            dry, mode = params.write_options(q, "UpdateOptions")
            negotiation.require_json_body(negotiation.body_type(req.header(b"content-type")))
            obj, warnings = decode_object(res, req.body, mode, route.name)
            e = await reg.update(ns or "", route.name, obj, subresource=route.subresource or None, dry_run=dry,
                                 admit=admit)  # fmt: skip
            return object_reply(res, e, out, "Metadata", clock, warnings=warnings)
        if verb == "patch":
            return await self._patch(req, q, route, reg, out, admit)
        if admit is not None and verb in ("delete", "deletecollection"):
            admit(None, None)
        if verb == "delete":
            e, done = await reg.delete(ns or "", route.name, delete_request(req.body, q))
            return object_reply(res, e, out, "Metadata", clock, status=200 if done else 202)
        if verb == "deletecollection":
            opts = listoptions.list_options(q, res)
            deleted = await reg.delete_collection(ns, opts, delete_request(req.body, q))
            return list_reply(res, ListResult(deleted, reg.cacher.revision), out, "Metadata", clock)
        raise MethodNotAllowed(f"{verb} is not supported")

    async def _patch(
        self, req: Request, q: Any, route: ResourcePath, reg: Registry, out: negotiation.Output, admit: Admit | None
    ) -> Reply:
        res = reg.resource
        kind = negotiation.patch_kind(negotiation.body_type(req.header(b"content-type")))
        body = req.body
        doc = decode_patch(body)
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
                                subresource=route.subresource or None, dry_run=dry, admit=admit)  # fmt: skip
        return object_reply(res, entry, out, "Metadata", self.clock, warnings=warnings)
