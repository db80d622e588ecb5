"""An async, typed REST client for the kos API.

One client serves every kind, driven by the resource table; objects go in and
come out as the frozen API types. Errors come back as the same `StatusError`
classes the server raised (`except NotFound:` works across the wire), and a
connection failure is a `ServiceUnavailable`. The client reaches the server only
through a `kos.client.transport.Transport` (one call; one watch stream): by
default keep-alive HTTP/1.1 connections (`HTTPPool`, TLS for https:// with the
`ssl` context given), wrapped in the WebSocket watch multiplexer with
`watch_mux`; tests pass `kos.testing.transport.MockTransport`. An optional token
bucket bounds the request rate (`qps`/`burst`, as client-go's).

Where to connect and as whom is a `kos.client.config.ClientConfig` (server, TLS context, default headers),
usually from a kubeconfig (`Client.from_kubeconfig`). `with_headers` makes a client of another identity on
the same transport and watches (many simulated nodes, one connection pool).

A call or watch answered 429 or 503 with a `Retry-After: <seconds>` header was not carried out
(kube-apiserver's in-flight cap, a server shutting down): the client waits that long (at most
`RETRY_AFTER_MAX` seconds) on its clock and sends it again, at most `MAX_RETRIES` times, whatever the verb —
client-go's `checkWait` and `maxRetries` (k8s.io/client-go/rest/request.go, with_retry.go). An answer
without the header is an error at once, as there. client-go waits on every 5xx that carries the header;
kos not on the others, because its 504 `ResourceVersionTooLarge` (`Retry-After: 1`) tells the reflector to
list again at once (kos.client.reflector), which ten one-second waits would delay.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import ssl as ssl_
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from kos.api import codec
from kos.api.errors import ServiceUnavailable, StatusError
from kos.api.meta import Status, status
from kos.api.resources import BY_TYPE, Resource
from kos.api.types import API_VERSION, Object
from kos.client.config import ClientConfig
from kos.client.failover import FailoverTransport
from kos.client.pager import ListPage, list_pages
from kos.client.ratelimit import TokenBucket
from kos.client.transport import Transport
from kos.client.watchevents import (
    ADDED,
    BOOKMARK,
    DELETED,
    ERROR,
    INITIAL_EVENTS_END,
    MODIFIED,
    SHARED_EVENTS,
    EventDecoder,
    WatchEvent,
)
from kos.client.watchmux import WatchMux
from kos.http.clientheaders import check_headers
from kos.http.clientpool import HTTPPool
from kos.http.clientresponse import ConnectionFailed, Response, StreamRefused
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

__all__ = [
    "ADDED", "BOOKMARK", "DELETED", "ERROR", "INITIAL_EVENTS_END", "MAX_RETRIES", "MODIFIED", "RETRY_AFTER_MAX",
    "SHARED_EVENTS", "Client", "ClientConfig", "WatchEvent", "open_transport",
]  # fmt: skip

log = get_logger(__name__)

T = TypeVar("T", bound=Object)


MAX_RETRIES = 10
"""Times a call answered with `Retry-After` is sent again before its error is returned (client-go's maxRetries)."""
RETRY_AFTER_MAX = 10.0
"""The longest wait, in seconds, for one `Retry-After` (a larger value waits this long)."""
_RETRY_STATUS = frozenset({429, 503})
"""Answers whose `Retry-After` is honoured (client-go's checkWait: 429 and every 5xx; see the module docstring)."""


def open_transport(
    server: str, *, ssl: ssl_.SSLContext | None = None, connections: int = 100, user_agent: str = "kos",
    watch_mux: bool = False, headers: Mapping[str, str] | None = None, before_connect: Callable[[], None] | None = None,
    servers: Sequence[str] = (), clock: Clock = REAL_CLOCK,
) -> Transport:  # fmt: skip
    """The default transport to `server` (http:// or https://): an `HTTPPool` of at most `connections`
    call connections (0: unbounded), its watches multiplexed over one WebSocket with `watch_mux`; every
    request (and the WebSocket's upgrade) carries `headers`; `before_connect` is called before each new
    connection (`ClientConfig.before_connect`). With several `servers` (`server` ignored), one such transport
    per server inside a `kos.client.failover.FailoverTransport` backing off on `clock`."""
    if len(servers) > 1:
        inner = [open_transport(s, ssl=ssl, connections=connections, user_agent=user_agent, watch_mux=watch_mux,
                                headers=headers, before_connect=before_connect) for s in servers]  # fmt: skip
        return FailoverTransport(inner, servers, clock=clock)
    pool = HTTPPool(server, limit=connections, user_agent=user_agent, ssl=ssl, headers=headers,
                    before_connect=before_connect)  # fmt: skip
    if not watch_mux:
        return pool
    ws_url = "ws" + server[4:] if server.startswith("http") else server
    return WatchMux(
        pool,
        ws_url + f"/apis/{API_VERSION}/watchmux",
        ssl=pool.ssl,
        user_agent=user_agent,
        headers=headers,
        before_connect=before_connect,
    )


def retry_after(status: int, headers: Mapping[bytes, bytes]) -> float | None:
    """Seconds to wait before sending a call again, or None if this answer does not ask for a retry.

    client-go's rule (request.go `checkWait`, `retryAfterSeconds`): a 429 or 503 carrying `Retry-After` as an
    integer number of seconds; bounded here to [0, RETRY_AFTER_MAX]. An HTTP date is not understood (nor
    there): no retry.
    """
    if status not in _RETRY_STATUS:
        return None
    raw = headers.get(b"retry-after")
    if raw is None or len(raw) > 12:
        return None
    try:
        seconds = int(raw)
    except ValueError:
        return None
    return float(min(max(seconds, 0), RETRY_AFTER_MAX))


class Client:
    """The typed client of one apiserver (`server`: its URL, or a `ClientConfig`) or of whatever `transport`
    reaches.

    With a URL alone, https is verified against the system's CAs (`ssl`, if given, replaces that context).
    `transport` replaces the default one (`open_transport(server, ssl=..., connections=...,
    watch_mux=..., headers=..., servers=...)`: with several servers in the config, a failover transport over
    them, kos.client.failover); `timeout` bounds each call (seconds); `share_events` lets watches that
    receive the same event line share one decoded object; `clock` times the waits `Retry-After` asks for.
    """

    def __init__(
        self,
        server: str | ClientConfig,
        *,
        qps: float = 0.0,
        burst: int = 0,
        user_agent: str = "kos",
        connections: int = 100,
        timeout: float = 60.0,
        watch_mux: bool = False,
        share_events: bool = False,
        ssl: ssl_.SSLContext | None = None,
        transport: Transport | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        config = server if isinstance(server, ClientConfig) else ClientConfig.for_server(server)
        if ssl is not None:
            config = dataclasses.replace(config, ssl=ssl, before_connect=None)
        self.config = config
        self.server = config.server
        self.user_agent = user_agent
        self.clock = clock
        self._limiter = TokenBucket(qps, max(burst, 1)) if qps > 0 else None
        self._timeout = timeout
        self._decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
        self.transport: Transport = transport if transport is not None else open_transport(
            self.server, ssl=config.ssl, connections=connections, user_agent=user_agent, watch_mux=watch_mux,
            headers=config.headers, before_connect=config.before_connect, servers=config.endpoints, clock=clock,
        )  # fmt: skip
        self._own_headers: dict[str, str] | None = None
        """A view's identity (`with_headers`): sent with each of its calls; None for the transport's own."""
        self._body_headers: dict[str, dict[str, str]] = {}
        """The headers of a call with a body, one mapping per media type (not one per call)."""
        self._stats = _Stats()
        self.watch_mux = watch_mux
        """Whether the default transport carries all watches over one multiplexed WebSocket (kos extension)."""
        self._shared: dict[bytes, WatchEvent] | None = {} if share_events else None
        """With `share_events`: recent event lines and what they decoded to, for watches that receive the same line."""
        self._event_decoders: dict[type[Any], EventDecoder] = {}

    @classmethod
    def from_kubeconfig(
        cls, path: str | os.PathLike[str], server: str | None = None, *, context: str | None = None, **kwargs: Any
    ) -> Client:
        """A client as the kubeconfig at `path` says (current or named `context`); `server` replaces its
        server. `kwargs` are `Client`'s. Raises `kos.pki.kubeconfig.KubeConfigError`."""
        clock = kwargs.get("clock", REAL_CLOCK)
        return cls(ClientConfig.from_kubeconfig(path, server=server, context=context, clock=clock), **kwargs)

    def with_headers(self, headers: Mapping[str, str]) -> Client:
        """A client whose calls also carry `headers` (another identity: `{"Authorization": "Bearer <token>"}`,
        replacing the transport's own), sharing this client's transport, rate limit, decoders and counters.

        Its watches go through the same transport: over a multiplexed WebSocket they run as the WebSocket's
        identity (this client's), over plain HTTP they carry `headers` too. Closing it closes nothing (the
        transport is this client's). Raises ValueError for a header that cannot be sent.
        """
        check_headers(headers)
        view = copy.copy(self)
        base = self._own_headers or {}
        view._own_headers = {**base, **headers}
        view._body_headers = {}
        view._is_view = True
        return view

    _is_view = False

    @property
    def list_objects_received(self) -> int:
        """Objects received in list answers by this client and its `with_headers` views."""
        return self._stats.list_objects

    @property
    def watch_events_received(self) -> int:
        """Watch events (not bookmarks) received by this client, for dissemination accounting."""
        return sum(d.received for d in self._event_decoders.values())

    async def close(self) -> None:
        if not self._is_view:
            await self.transport.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def path(res: Resource, namespace: str | None, name: str = "", sub: str = "") -> str:
        p = res.prefix + "/"
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
        headers = self._own_headers
        if body is not None:
            headers = self._body_headers.get(content_type)
            if headers is None:
                headers = self._body_headers[content_type] = {**(self._own_headers or {}), "Content-Type": content_type}
        try:  # the first attempt inline: one coroutine frame fewer per call than through `_send`
            r = await self.transport.request(
                method, path, query=params, body=body, headers=headers, timeout=self._timeout
            )
        except (TimeoutError, ConnectionFailed) as e:
            raise ServiceUnavailable(f"cannot reach {self._where()}: {type(e).__name__}: {e}") from e
        if r.status < 300:
            return r.body
        attempt = 0
        while (wait := retry_after(r.status, r.headers)) is not None and attempt < MAX_RETRIES:
            attempt += 1
            log.debug(
                "retrying after the server asked to wait", method=method, path=path, status=r.status, seconds=wait
            )
            await self.clock.sleep(wait)
            r = await self._send(method, path, params, body, headers)
            if r.status < 300:
                return r.body
        raise _status_error(r.status, r.body)

    async def _send(
        self, method: str, path: str, params: dict[str, str] | None, body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> Response:  # fmt: skip
        try:
            return await self.transport.request(
                method, path, query=params, body=body, headers=headers, timeout=self._timeout
            )
        except (TimeoutError, ConnectionFailed) as e:
            raise ServiceUnavailable(f"cannot reach {self._where()}: {type(e).__name__}: {e}") from e

    def _where(self) -> str:
        """The server (or servers, with failover) a failed call could not reach, for its error."""
        t = self.transport
        return ", ".join(t.servers) if isinstance(t, FailoverTransport) else self.server

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
        """All matching objects (following `continue` when paging, `limit` a page) and the list's resourceVersion,
        as one snapshot unless `inconsistent_ok` (`kos.client.pager.list_pages`)."""
        res = BY_TYPE[cls]
        params = _given({"labelSelector": label_selector, "fieldSelector": field_selector,
                         "resourceVersion": resource_version, "resourceVersionMatch": resource_version_match})  # fmt: skip
        path = self.path(res, namespace)

        async def get(query: dict[str, str]) -> bytes:
            return await self._request("GET", path, params=query)

        def counted(n: int) -> None:
            self._stats.list_objects += n

        return await list_pages(get, self._decoder(ListPage[cls]), params, limit=limit,  # type: ignore[valid-type]
                                inconsistent_ok=inconsistent_ok, resource=res.plural, counted=counted)  # fmt: skip

    async def create(self, obj: T) -> T:
        return await self._send_object("POST", obj, self.path(BY_TYPE[type(obj)], obj.metadata.namespace))

    async def update(self, obj: T) -> T:
        m = obj.metadata
        return await self._send_object("PUT", obj, self.path(BY_TYPE[type(obj)], m.namespace, m.name))

    async def update_status(self, obj: T) -> T:
        m = obj.metadata
        return await self._send_object("PUT", obj, self.path(BY_TYPE[type(obj)], m.namespace, m.name, "status"))

    async def _send_object(self, method: str, obj: T, path: str) -> T:
        """`obj` sent to `path` with `method`; what the server answered, decoded as `obj`'s type."""
        data = await self._request(method, path, body=codec.encode(obj))
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
        params.update(_given({"resourceVersion": resource_version, "labelSelector": label_selector,
                              "fieldSelector": field_selector,
                              "timeoutSeconds": "" if timeout_seconds is None else str(timeout_seconds)}))  # fmt: skip
        if self._limiter is not None:
            await self._limiter.wait()
        decode = self._event_decoder(cls).decode
        for attempt in range(MAX_RETRIES + 1):
            stream = self.transport.stream(self.path(res, namespace), query=params, headers=self._own_headers)
            try:
                async for lines in stream:
                    for line in lines:
                        yield decode(line)
                return
            except ConnectionFailed as e:
                raise ServiceUnavailable(f"watch of {res.plural} interrupted: {e}") from e
            except StreamRefused as e:
                got = e.response
                wait = retry_after(got.status, got.headers) if attempt < MAX_RETRIES else None
                if wait is None:
                    raise _status_error(got.status, got.body) from None
            finally:
                await stream.aclose()
            await self.clock.sleep(wait)  # a refused watch sent no event: opening it again repeats nothing

    def _event_decoder(self, cls: type[Any]) -> EventDecoder:
        d = self._event_decoders.get(cls)
        if d is None:
            d = self._event_decoders[cls] = EventDecoder(self._decoder(cls), self._shared)
        return d


class _Stats:
    """Counters shared by a client and its `with_headers` views."""

    __slots__ = ("list_objects",)

    def __init__(self) -> None:
        self.list_objects = 0


def _given(options: dict[str, str]) -> dict[str, str]:
    """The options that are set (non-empty), as query parameters."""
    return {k: v for k, v in options.items() if v}


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
