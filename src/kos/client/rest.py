"""An async, typed REST client for the kos API.

One client serves every kind, driven by the resource table; objects go in and
come out as the frozen API types. Errors come back as the same `StatusError`
classes the server raised (`except NotFound:` works across the wire), and a
connection failure is a `ServiceUnavailable`. Connections are pooled and kept
alive; an optional token bucket bounds the request rate (`qps`/`burst`, as
client-go's).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

import aiohttp
import msgspec

from kos.api import codec
from kos.api.errors import Expired, ServiceUnavailable, StatusError
from kos.api.meta import Status, status
from kos.api.resources import BY_TYPE, Resource
from kos.api.types import API_VERSION, Object
from kos.client.ratelimit import TokenBucket
from kos.client.transport import ConnectionFailed, HTTPPool
from kos.client.watchmux import WatchMux

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Object)

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"


class _RawEvent(msgspec.Struct, gc=False):
    type: str
    object: msgspec.Raw


class _Meta(msgspec.Struct, rename="camel", gc=False):
    resource_version: str = ""
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class _PartialObject(msgspec.Struct, gc=False):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


class _ListMeta(msgspec.Struct, rename="camel", gc=False):
    resource_version: str = ""
    continue_: str = msgspec.field(default="", name="continue")


class _List(msgspec.Struct, Generic[T], gc=False):
    metadata: _ListMeta
    items: list[T]


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK."""
    object: Any
    """The object (None for a BOOKMARK)."""
    resource_version: str
    initial_events_end: bool = False
    """A BOOKMARK that ends the initial state of a streaming list (`send_initial_events`)."""


INITIAL_EVENTS_END = "k8s.io/initial-events-end"
SHARED_EVENTS = 4096
"""Event lines a `share_events` client remembers (~1 KB each for a NetworkAttachment)."""


class Client:
    def __init__(
        self,
        server: str,
        *,
        qps: float = 0.0,
        burst: int = 0,
        user_agent: str = "kos",
        connections: int = 100,
        timeout: float = 60.0,
        watch_mux: bool = False,
        share_events: bool = False,
    ) -> None:
        self.server = server.rstrip("/")
        self.user_agent = user_agent
        self._limiter = TokenBucket(qps, max(burst, 1)) if qps > 0 else None
        self._connections = connections
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
        self._mux: WatchMux | None = None
        # requests go over the lean keep-alive transport (plain http); anything else uses aiohttp
        self._pool = (
            HTTPPool(self.server, limit=connections, user_agent=user_agent)
            if self.server.startswith("http://")
            else None
        )
        self.watch_mux = watch_mux
        """Carry all watches over one multiplexed WebSocket (kos extension) instead of a connection each."""
        self.watch_events_received = 0
        """Watch events (not bookmarks) received by this client, for dissemination accounting."""
        self._shared: dict[bytes, WatchEvent] | None = {} if share_events else None
        """With `share_events`: recent event lines and what they decoded to, for watches that receive the same line."""
        self.list_objects_received = 0

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300),
                headers={"User-Agent": self.user_agent, "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._mux is not None:
            await self._mux.close()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def path(res: Resource, namespace: str | None, name: str = "", sub: str = "") -> str:
        p = f"/apis/{API_VERSION}/"
        if namespace:
            p += f"namespaces/{namespace}/"
        p += res.plural
        if name:
            p += "/" + name
        if sub:
            p += "/" + sub
        return p

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> bytes:
        if self._limiter is not None:
            await self._limiter.wait()
        if self._pool is not None:
            try:
                code, data = await self._pool.request(
                    method, path, params=params, body=body, content_type=content_type, timeout=self._timeout
                )
            except (TimeoutError, ConnectionFailed) as e:
                raise ServiceUnavailable(f"cannot reach {self.server}: {type(e).__name__}: {e}") from e
            if code >= 300:
                raise _status_error(code, data)
            return data
        headers = {"Content-Type": content_type} if body is not None else None
        try:
            async with self.session.request(
                method, self.server + path, params=params, data=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as r:  # fmt: skip
                data = await r.read()
                if r.status >= 300:
                    raise _status_error(r.status, data)
                return data
        except (TimeoutError, aiohttp.ClientConnectionError) as e:
            raise ServiceUnavailable(f"cannot reach {self.server}: {type(e).__name__}: {e}") from e

    def _decoder(self, t: type[Any]) -> msgspec.json.Decoder[Any]:
        d = self._decoders.get(t)
        if d is None:
            d = self._decoders[t] = msgspec.json.Decoder(t)
        return d

    # --- verbs -------------------------------------------------------------------------------

    async def get(self, cls: type[T], namespace: str, name: str, *, resource_version: str = "") -> T:
        res = BY_TYPE[cls]
        params = {"resourceVersion": resource_version} if resource_version else None
        data = await self._request("GET", self.path(res, namespace, name), params=params)
        obj: T = self._decoder(cls).decode(data)
        return obj

    async def list(
        self,
        cls: type[T],
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
        limit: int = 0,
        inconsistent_ok: bool = False,
    ) -> tuple[list[T], str]:
        """All matching objects (following `continue` when paging) and the list's resourceVersion.

        When the server no longer has the snapshot the pages come from (410 Expired on a continue
        token), the result must still be one snapshot, so everything is listed again in one request,
        as client-go's pager does (`FullListIfExpired`). With `inconsistent_ok`, the listing goes on
        instead with the token the 410 carries (kube-apiserver's "inconsistent continue", kubernetes
        #66981): the rest of the keys as they are now — objects changed since the first page may show
        up — and the resourceVersion returned is the one the remaining pages were served at.
        """
        res = BY_TYPE[cls]
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if resource_version:
            params["resourceVersion"] = resource_version
        if resource_version_match:
            params["resourceVersionMatch"] = resource_version_match
        first = dict(params)
        if limit:
            params["limit"] = str(limit)
        items: list[T] = []
        rv = ""
        dec = self._decoder(_List[cls])  # type: ignore[valid-type]
        while True:
            try:
                data = await self._request("GET", self.path(res, namespace), params=params)
            except Expired as e:
                if "continue" not in params:
                    raise
                if inconsistent_ok and e.continue_token:
                    log.info("list of %s: %s; going on from the current state", res.plural, e.message)
                    params["continue"] = e.continue_token
                    rv = ""  # the remaining pages come from a newer snapshot
                    continue
                log.info("list of %s: the snapshot of its first page expired; listing everything again", res.plural)
                items, rv, params = [], "", dict(first)
                continue
            page = dec.decode(data)
            items.extend(page.items)
            self.list_objects_received += len(page.items)
            rv = rv or page.metadata.resource_version
            if not page.metadata.continue_:
                return items, rv
            params = {k: v for k, v in params.items() if k not in ("resourceVersion", "resourceVersionMatch")}
            params["continue"] = page.metadata.continue_

    async def create(self, obj: T) -> T:
        res = BY_TYPE[type(obj)]
        data = await self._request("POST", self.path(res, obj.metadata.namespace), body=codec.encode(obj))
        out: T = self._decoder(type(obj)).decode(data)
        return out

    async def update(self, obj: T) -> T:
        res = BY_TYPE[type(obj)]
        m = obj.metadata
        data = await self._request("PUT", self.path(res, m.namespace, m.name), body=codec.encode(obj))
        out: T = self._decoder(type(obj)).decode(data)
        return out

    async def update_status(self, obj: T) -> T:
        res = BY_TYPE[type(obj)]
        m = obj.metadata
        data = await self._request("PUT", self.path(res, m.namespace, m.name, "status"), body=codec.encode(obj))
        out: T = self._decoder(type(obj)).decode(data)
        return out

    async def patch(
        self, cls: type[T], namespace: str, name: str, patch: Any, *, kind: str = "merge", subresource: str = ""
    ) -> T:
        res = BY_TYPE[cls]
        ct = "application/merge-patch+json" if kind == "merge" else "application/json-patch+json"
        data = await self._request(
            "PATCH", self.path(res, namespace, name, subresource), body=msgspec.json.encode(patch), content_type=ct
        )
        out: T = self._decoder(cls).decode(data)
        return out

    async def delete(
        self,
        cls: type[T],
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: str | None = None,
    ) -> T:
        res = BY_TYPE[cls]
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
        pre: dict[str, str] = {}
        if uid is not None:
            pre["uid"] = uid
        if resource_version is not None:
            pre["resourceVersion"] = resource_version
        if pre:
            opts["preconditions"] = pre
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        data = await self._request("DELETE", self.path(res, namespace, name), body=msgspec.json.encode(opts))
        out: T = self._decoder(cls).decode(data)
        return out

    async def watch(
        self,
        cls: type[T],
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
        send_initial_events: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        """Events after `resource_version` until the server ends the stream.

        With `send_initial_events` (a streaming list, Kubernetes' watch-list), the stream starts with
        every selected object as ADDED, then a BOOKMARK with `initial_events_end`, then the changes:
        a list and a watch in one request. Raises Gone (410) if the server no longer has the history
        asked for, and ServiceUnavailable if the connection fails.
        """
        res = BY_TYPE[cls]
        params = {"watch": "1", "allowWatchBookmarks": "true" if allow_bookmarks or send_initial_events else "false"}
        if send_initial_events:
            params["sendInitialEvents"] = "true"
            params["resourceVersionMatch"] = "NotOlderThan"
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        if self._limiter is not None:
            await self._limiter.wait()
        if self.watch_mux:
            if self._mux is None:
                self._mux = WatchMux(
                    self.session, self.server.replace("http", "ws", 1) + f"/apis/{API_VERSION}/watchmux"
                )
            request: dict[str, Any] = {k: v for k, v in params.items() if k != "watch"}
            request["resource"] = res.plural
            if namespace:
                request["namespace"] = namespace
            if timeout_seconds is not None:
                request["timeoutSeconds"] = timeout_seconds
            async for line in self._mux.lines(request):
                ev = self._watch_event(line, cls)
                if ev is not None:
                    yield ev
            return
        try:
            async with self.session.get(self.server + self.path(res, namespace), params=params) as r:
                if r.status >= 300:
                    raise _status_error(r.status, await r.read())
                async for line in r.content:
                    if not line.strip():
                        continue
                    ev = self._watch_event(line, cls)
                    if ev is not None:
                        yield ev
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise ServiceUnavailable(f"watch of {res.plural} interrupted: {type(e).__name__}: {e}") from e

    def _watch_event(self, line: bytes, cls: type[T]) -> WatchEvent | None:
        shared = self._shared
        if shared is not None:
            got = shared.get(line)
            if got is not None:
                self.watch_events_received += 1
                return got
        ev = self._decoder(_RawEvent).decode(line)
        if ev.type == BOOKMARK:
            meta = self._decoder(_PartialObject).decode(ev.object).metadata
            return WatchEvent(BOOKMARK, None, meta.resource_version, meta.annotations.get(INITIAL_EVENTS_END) == "true")
        if ev.type == ERROR:
            raise StatusError.from_status(self._decoder(Status).decode(ev.object))
        obj = self._decoder(cls).decode(ev.object)
        self.watch_events_received += 1
        out = WatchEvent(ev.type, obj, obj.metadata.resource_version)
        if shared is not None:
            if len(shared) >= SHARED_EVENTS:
                del shared[next(iter(shared))]  # the oldest: the lines of one change arrive together
            shared[line] = out
        return out


def _status_error(code: int, data: bytes) -> StatusError:
    try:
        st = codec.decode(data, Status)
        if st.kind == "Status" and st.code:
            return StatusError.from_status(st)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    text = data[:200].decode(errors="replace") or f"HTTP {code}"
    err = StatusError.from_status(status(code=code, reason="", message=text))
    return err
