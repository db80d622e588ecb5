"""etcd's JSON gateway as a transport for kos.storage.etcd: the gRPC stubs' shape over kos's own HTTP client.

Why: measured in bench/etcd_binding.py (`kos-http`, docs/dependencies.md "The etcd binding"), the apiserver
spends a quarter to a third of grpc.aio's CPU per etcd call when it speaks to etcd's gRPC JSON gateway (the
grpc-gateway every member serves on its client port, `/v3/kv/range`, `/v3/kv/txn`, `/v3/kv/compaction`,
`/v3/watch`) through kos.http.clientpool.HTTPPool (httptools, keep-alive HTTP/1.1) and msgspec, while etcd spends
more translating. Only an end-to-end A/B says which is faster overall, so the storage URL chooses
(`etcd://…?transport=gateway`, kos.storage.url) and everything else stays one EtcdStore.

The transport is the only difference. `GatewayEndpoint` offers what kos.storage.etcd's gRPC endpoint offers —
`kv.Range/Txn/Compact(request, timeout=, metadata=)` and `watch.Watch(metadata=)` with `write`/`read`/`cancel`
— taking the same aetcd protobuf requests (turned into the gateway's JSON by `to_json`: field names, enum
names, bytes as base64) and answering with msgspec structs that carry the response fields the store reads.
Every guarantee is therefore the store's own code; what the gateway must map is:

* **hasleader**: every request carries `Grpc-Metadata-hasleader: true` (grpc-gateway forwards `Grpc-Metadata-*`
  headers as gRPC metadata), so a member without a leader refuses at once (bench/etcd_gateway_guarantees.py).
* **deadlines**: each call sends `Grpc-Timeout: <ms>m` (grpc-gateway's deadline header) and bounds its own wait
  by the same time, so a proposal lost with a dead leader ends as DEADLINE_EXCEEDED, as over gRPC.
* **status codes**: a non-200 answer's JSON `{"code", "message"}` is the gRPC status; it is raised as
  `GatewayError`, which has AioRpcError's `code()` and `details()`, so the store's retry and ambiguity rules
  apply unchanged. A connection that could not be made (or a TLS handshake that failed) is UNAVAILABLE
  "failed to connect" (never sent); one that broke mid-request is UNAVAILABLE (maybe applied); no answer in
  time is DEADLINE_EXCEEDED.
* **watches**: `/v3/watch` is a POST whose body is the create request and whose answer is a stream of JSON
  lines `{"result": WatchResponse}` (or `{"error": …}`); the stream ending or breaking reads as the end of
  the call, which the store resumes from its last revision on the next endpoint.
* **mutual TLS**: https with an ssl context holding etcd's CA and the client certificate (`EtcdTLS.context`).
  grpc-gateway inside etcd dials the member's own gRPC port with the member's serving certificate as a
  client certificate, so with `--client-cert-auth` that certificate must be serverAuth+clientAuth
  (`kos certs init --peer`, kos.testing.etcd's `peer=True`).
* **closing**: the store's close closes each endpoint's pool, which aborts every connection it made —
  closing ones too: a watch's TLS connection closed when its watch ended waits for the gateway's
  close_notify, which comes only once the gateway's handler has noticed — and returns when all are gone,
  so no transport outlives the store (HTTPPool.close).

Layering: HTTPPool lives in kos.http, below kos.storage and kos.client alike, so this module imports it
as kos.client does.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator
from typing import Any

import grpc
import msgspec

from kos.http.clientpool import HTTPPool
from kos.http.clientresponse import ConnectionFailed, StreamRefused

_CODES = {sc.value[0]: sc for sc in grpc.StatusCode}
_HEADERS = {"Grpc-Metadata-hasleader": "true", "Content-Type": "application/json"}
_BODY = "X-Kos-Watch-Body"
"""The pseudo-header carrying a watch's JSON body from `_WatchCall.write` to `_Pool._encode` (removed there)."""
_TYPE_MESSAGE = 11
_TYPE_ENUM = 14


class GatewayError(Exception):
    """A gRPC status reported by the gateway (or made from a connection failure): AioRpcError's shape."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def to_json(msg: Any) -> dict[str, Any]:
    """A protobuf message as the gateway's JSON object: only set fields, enums by name, bytes left for msgspec
    to base64 (protobuf's JSON mapping). int64 stay numbers, which grpc-gateway accepts."""
    out: dict[str, Any] = {}
    for fd, v in msg.ListFields():
        t = fd.type
        if t == _TYPE_MESSAGE:
            out[fd.name] = [to_json(x) for x in v] if fd.is_repeated else to_json(v)
        elif t == _TYPE_ENUM:
            names = fd.enum_type.values_by_number
            out[fd.name] = [names[x].name for x in v] if fd.is_repeated else names[v].name
        else:
            out[fd.name] = list(v) if fd.is_repeated else v
    return out


# --- responses: the fields kos.storage.etcd reads, with protobuf's defaults ---------------------------------


class Header(msgspec.Struct):
    revision: int = 0


class KV(msgspec.Struct):
    key: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""


class RangeResponse(msgspec.Struct):
    header: Header = msgspec.field(default_factory=Header)
    kvs: list[KV] = []
    more: bool = False
    count: int = 0


class DeleteRangeResponse(msgspec.Struct):
    prev_kvs: list[KV] = []


class ResponseOp(msgspec.Struct):
    response_range: RangeResponse = msgspec.field(default_factory=RangeResponse)
    response_delete_range: DeleteRangeResponse = msgspec.field(default_factory=DeleteRangeResponse)


class TxnResponse(msgspec.Struct):
    header: Header = msgspec.field(default_factory=Header)
    succeeded: bool = False
    responses: list[ResponseOp] = []


class CompactionResponse(msgspec.Struct):
    header: Header = msgspec.field(default_factory=Header)


class WatchEvent(msgspec.Struct):
    type: int | str = 0
    kv: KV = msgspec.field(default_factory=KV)
    prev_kv: KV | None = None

    def __post_init__(self) -> None:
        # the gateway names the enum ("DELETE"; PUT, the default, is left out): the store compares numbers
        if self.type == "DELETE":
            self.type = 1
        elif isinstance(self.type, str):
            self.type = 0

    def HasField(self, name: str) -> bool:  # noqa: N802 (protobuf's name, which the store calls)
        return getattr(self, name) is not None


class WatchResponse(msgspec.Struct):
    header: Header = msgspec.field(default_factory=Header)
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    fragment: bool = False
    events: list[WatchEvent] = []


class _WatchLine(msgspec.Struct):
    result: WatchResponse | None = None
    error: dict[str, Any] | None = None


_ENC = msgspec.json.Encoder()
_RANGE = msgspec.json.Decoder(RangeResponse, strict=False)
_TXN = msgspec.json.Decoder(TxnResponse, strict=False)
_COMPACT = msgspec.json.Decoder(CompactionResponse, strict=False)
_LINE = msgspec.json.Decoder(_WatchLine, strict=False)
_ERROR = msgspec.json.Decoder(dict[str, Any])


def _status(status: int, body: bytes) -> GatewayError:
    """The gRPC status in a gateway's error answer (`{"code": N, "message": …}`)."""
    try:
        doc = _ERROR.decode(body)
        code = _CODES.get(int(doc.get("code", 2)), grpc.StatusCode.UNKNOWN)
        return GatewayError(code, str(doc.get("message") or doc.get("error") or ""))
    except (msgspec.DecodeError, TypeError, ValueError):
        code = grpc.StatusCode.UNAVAILABLE if status in (502, 503, 504) else grpc.StatusCode.UNKNOWN
        return GatewayError(code, f"HTTP {status}: {body[:200]!r}")


def _connection_error(e: BaseException) -> GatewayError:
    if isinstance(e, TimeoutError):
        return GatewayError(grpc.StatusCode.DEADLINE_EXCEEDED, f"gateway: {e}")
    if isinstance(e, ConnectionFailed) and e.retryable:  # the request surely never left
        return GatewayError(grpc.StatusCode.UNAVAILABLE, f"failed to connect: {e}")
    return GatewayError(grpc.StatusCode.UNAVAILABLE, f"connection broke: {e}")


class _Pool(HTTPPool):
    """HTTPPool whose `stream()` POSTs the watch's create request (the gateway's watch is a POST; kos's own
    watches are GETs); the stream machinery is HTTPPool's. The body travels to `_encode` in the `_BODY`
    pseudo-header of that one stream's call (never sent), so concurrent watches cannot mix bodies."""

    def _encode(self, method: str, path: str, query: Any, body: bytes | None, headers: Any) -> bytes:
        if headers and _BODY in headers:
            method, body = "POST", headers[_BODY].encode()
            headers = {k: v for k, v in headers.items() if k != _BODY}
        return super()._encode(method, path, query, body, headers)


class _KV:
    """`KV.Range/Txn/Compact` over the gateway, with the gRPC stubs' call signature."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool

    async def _call(self, path: str, req: Any, timeout: float) -> bytes:
        headers = {"Grpc-Timeout": f"{max(1, int(timeout * 1000))}m"}
        try:
            resp = await self._pool.request("POST", path, body=_ENC.encode(to_json(req)), headers=headers,
                                            timeout=timeout)  # fmt: skip
        except (ConnectionFailed, TimeoutError, OSError, ssl.SSLError) as e:
            raise _connection_error(e) from e
        if resp.status != 200:
            raise _status(resp.status, resp.body)
        return resp.body

    async def Range(self, req: Any, *, timeout: float, metadata: Any = ()) -> RangeResponse:  # noqa: N802
        return _RANGE.decode(await self._call("/v3/kv/range", req, timeout))

    async def Txn(self, req: Any, *, timeout: float, metadata: Any = ()) -> TxnResponse:  # noqa: N802
        return _TXN.decode(await self._call("/v3/kv/txn", req, timeout))

    async def Compact(self, req: Any, *, timeout: float, metadata: Any = ()) -> CompactionResponse:  # noqa: N802
        return _COMPACT.decode(await self._call("/v3/kv/compaction", req, timeout))


class _WatchCall:
    """One gateway watch with the shape of a gRPC bidirectional Watch call: `write` the create request once,
    then `read` responses; `read` returns None when the stream ended (gRPC's EOF)."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._stream: AsyncGenerator[list[bytes], None] | None = None
        self._lines: list[bytes] = []

    async def write(self, req: Any) -> None:
        body = _ENC.encode({"create_request": to_json(req.create_request)}).decode()
        self._stream = self._pool.stream("/v3/watch", headers={_BODY: body})

    async def read(self) -> WatchResponse | None:
        assert self._stream is not None, "write the create request first"
        while not self._lines:
            try:
                batch = await self._stream.__anext__()
            except StopAsyncIteration:
                return None
            except StreamRefused as e:
                raise _status(e.response.status, e.response.body) from e
            except (ConnectionFailed, OSError, ssl.SSLError) as e:
                raise _connection_error(e) from e
            self._lines = batch[::-1]
        msg = _LINE.decode(self._lines.pop())
        if msg.result is None:
            err = msg.error or {}
            code = _CODES.get(int(err.get("grpc_code", err.get("code", 14))), grpc.StatusCode.UNAVAILABLE)
            raise GatewayError(code, str(err.get("message") or err))
        return msg.result

    def cancel(self) -> None:
        """Close the stream's connection. A read in progress (only when the store closes) ends when the
        store closes the endpoint's pool, which closes every stream connection."""
        stream, self._stream = self._stream, None
        if stream is None or getattr(stream, "ag_running", False):
            return
        # HTTPPool.stream's `finally` (which closes the connection) has no await: one step runs it all
        closing = stream.aclose()
        try:
            closing.send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - it awaited after all: stop there (the connection is closed with the pool)
            closing.close()


class _WatchStub:
    def __init__(self, pool: _Pool) -> None:
        self._pool = pool

    def Watch(self, *, metadata: Any = ()) -> _WatchCall:  # noqa: N802 (the gRPC stub's name)
        return _WatchCall(self._pool)


class GatewayEndpoint:
    """One etcd member's JSON gateway (`http(s)://host:port`): `kv` and `watch` as kos.storage.etcd uses them."""

    __slots__ = ("host", "kv", "pool", "port", "watch")

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None = None) -> None:
        """Over https with `context` (etcd's CA, and the client certificate for mutual TLS), else in clear."""
        self.host = host
        self.port = port
        scheme = "https" if context is not None else "http"
        self.pool = _Pool(f"{scheme}://{host}:{port}", ssl=context, headers=_HEADERS)
        self.kv = _KV(self.pool)
        self.watch = _WatchStub(self.pool)

    async def close(self) -> None:
        """Drop every connection to this member (watches' too) and return once each is gone (HTTPPool.close)."""
        await self.pool.close()

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (gateway)"
