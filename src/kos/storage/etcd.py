"""`etcd://h1:p1,h2:p2[/prefix]`: the Store contract on an etcd 3.4+ cluster, over gRPC.

Why it looks the way it does:

* **Raw protobuf calls; aetcd for the stubs.** aetcd ships etcd's generated gRPC
  stubs and messages for the current protobuf runtime (`aetcd.rpc`), and that is
  all we use of it. Its `Client` wrapper lacks revision-pinned and limited ranges,
  turns the gRPC status we need for retry decisions into its own exceptions, and
  its watcher hands out events one at a time through callbacks behind a shared
  lock, so batch boundaries are lost. Instead, every operation is one `KV.Range`,
  `KV.Txn` or `KV.Compact` request built from `aetcd.rpc` messages, and each watch
  is its own bidirectional `Watch` stream.
* **Every write is one transaction with a compare**, so etcd itself does the
  compare-and-swap. Create is `create_revision == 0 ? put`. Update is
  `mod_revision == expected ? put` (plus "exists" when expected is 0, because etcd
  gives a missing key mod_revision 0). Delete is `exists [and mod_revision ==
  expected] ? delete(prev_kv)`. Guards on other keys are more `mod_revision ==`
  compares in the same transaction. The failure branch reads the key (and the
  guarded keys), so a lost race reports the current value without a second round
  trip. The revision in the
  response header is the write's revision, which is the object's resourceVersion.
* **No client-side lock.** All operations share one grpc.aio channel per endpoint,
  and HTTP/2 multiplexes them. Concurrency therefore reaches etcd directly, and etcd
  batches concurrent proposals into one raft append and fsync. Measured on 2 cores:
  about 1k creates/s sequentially and 4-6k/s at 32-64 in flight, the same as bare
  stubs.
* **One `Range` for concurrent revision reads.** `current_revision` (read by the apiserver's `Cacher.sync`
  before consistent reads, watches without a resourceVersion and updates without one) is shared by the
  callers that arrive while the previous read is on the wire: they join the next request, never one already
  sent, so each still reads after it called. Under load this halves those round trips (docs/performance.md,
  issue 13).
* **Simple failover.** The store talks to one endpoint at a time. When a call fails
  as unavailable (connection refused or reset, no leader, deadline exceeded), it
  moves to the next endpoint. Reads are simply retried. A write that failed
  *ambiguously* (it may have been applied, e.g. the member died mid-request) is
  re-issued as the same compare-and-swap, which cannot apply twice:
  * if the retry succeeds, the first attempt was not applied, and now never will be;
  * if the retry's compare fails and the key holds exactly the bytes we wrote, the
    first attempt was applied, and is reported as a success — also when another client
    has written the key since (a controller updates a new object within milliseconds):
    a create then looks at the value the key was created with (a read at its create
    revision), an update at the key's first change after the revision it expected (its
    history, replayed by a watch);
  * otherwise it is the ordinary conflict. The one case left unknowable (a delete
    whose key is now gone) is `Unavailable`, saying that it may have been applied.

  Retrying stops after `retry_timeout`; then `Unavailable` names every endpoint and
  the last error. Every request carries etcd's `hasleader` metadata, so a member
  that knows it has no leader refuses at once. A proposal forwarded to a leader
  that has just died is lost silently and waits out `request_timeout`, which
  therefore sets the failover time (about 3 s with the defaults).
* **Watches resume themselves.** If a watch stream breaks, it is reopened on the
  next endpoint from the last revision it delivered. The consumer misses nothing
  and gets no duplicates. It sees `Unavailable` only when no endpoint serves the
  watch within `retry_timeout`, and `Compacted` if the history it needs was
  compacted in the meantime. Replaying history is paced by etcd: it feeds a watch
  that starts in the past about 1000 revisions per 100 ms sync, roughly 7k events/s
  here. So resume from recent revisions; keeping them recent is the watch cache's job.
* **Compaction is exact.** `compact(r)` is etcd's `Compact(r)`: the state at `r` is
  kept and history before it is gone. A watch "after a" is opened at start revision
  `a`, one earlier than needed, and the event at `a` is dropped. This makes etcd's
  own check (`start < compact revision`) the same as the contract's `a < r`, and
  the first event after a compaction still gets its previous value.
* **Lists are paged at one revision.** `list` reads 1000 keys per request, each page
  pinned to the first page's revision with a raw `RangeRequest(revision=...)`. A
  large prefix then neither exceeds gRPC's message limits nor mixes two points in
  time.

* **Mutual TLS when asked.** With an `EtcdTLS` (kos.storage.etcd_tls: the CA, the client certificate and
  key), every endpoint's channel is a grpc secure channel; aetcd's `Client` could not do this, our own
  channels can. A refused handshake is retried and failed over like any unreachable member, and the final
  `Unavailable` says that the handshake failed and names the files.
* **Retries on the injected clock.** The retry windows (`retry_timeout`, a call's `window`) and the
  backoff between rounds of failed attempts read a `kos.util.clock.Clock`, so tests drive failover
  without waiting. What bounds real I/O stays on real time: each attempt's gRPC deadline
  (`request_timeout`) and the wait for a watch stream's creation (`asyncio.wait_for` on the loop).

Keys are stored under `prefix` (etcd key = prefix + store key), and the prefix is
stripped on the way out, so several stores can share one etcd.

Two classes: `_Cluster` is the endpoints, the current one, and failover for calls
and watch streams; `EtcdStore` turns the Store contract into etcd requests over it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from aetcd import rpc

from kos.storage.etcd_gateway import GatewayEndpoint, GatewayError, WatchResponse
from kos.storage.etcd_tls import EtcdTLS
from kos.storage.interface import (
    Compacted,
    Deleted,
    Event,
    EventType,
    Guard,
    GuardFailed,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionMismatch,
    StoreError,
    Unavailable,
    guard_holds,
)
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

log = get_logger(__name__)

_Events = list[Event]
_Ops = list[Any]

_PAGE = 1000
_HASLEADER = (("hasleader", "true"),)
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),  # etcd's default --grpc-keepalive-min-time is 5 s
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]

TRANSPORTS = ("grpc", "gateway")
"""How the store reaches etcd: gRPC (grpc.aio), or etcd's JSON gateway (kos.storage.etcd_gateway)."""
_RPC_ERRORS = (rpc.AioRpcError, GatewayError)
"""A gRPC status: from grpc.aio, or from the gateway (the same `code()` and `details()`)."""
_WATCH_RESPONSES = (rpc.WatchResponse, WatchResponse)

_CREATE = rpc.Compare.CREATE
_MOD = rpc.Compare.MOD
_EQUAL = rpc.Compare.EQUAL
_GREATER = rpc.Compare.GREATER
_DELETE_EVENT = rpc.Event.DELETE

_UNAVAILABLE = rpc.StatusCode.UNAVAILABLE
_DEADLINE = rpc.StatusCode.DEADLINE_EXCEEDED
_OUT_OF_RANGE = rpc.StatusCode.OUT_OF_RANGE

_NOT_SENT = ("failed to connect", "connection refused", "etcdserver: no leader", "too many requests")
"""gRPC details meaning the request never reached a member that could apply it."""
_TLS_FAILED = ("TSI_", "andshake", "SSL_ERROR", "CERTIFICATE_VERIFY")
"""gRPC details of a failed TLS handshake (either side refused the other's certificate)."""


_CORE_FAILED = "Internal error from Core"
"""grpc.aio's details when grpc core failed an operation on the call itself (`ExecuteBatchError`: its connection
broke under it, as when a member dies while a watch stream is being opened on it) — not etcd's answer."""


def _retryable(e: Exception) -> bool:
    if not isinstance(e, _RPC_ERRORS):
        return False
    code = e.code()
    if code in (_UNAVAILABLE, _DEADLINE):
        return True
    if code == rpc.StatusCode.INTERNAL and e.details() == _CORE_FAILED:
        return True  # the transport failed: like UNAVAILABLE, and a write it carried may have been applied
    return code == rpc.StatusCode.RESOURCE_EXHAUSTED and "too many requests" in (e.details() or "")


def _not_sent(e: Exception) -> bool:
    details = (e.details() or "").lower() if isinstance(e, _RPC_ERRORS) else ""
    return any(s in details for s in _NOT_SENT)


def _describe(e: BaseException) -> str:
    if isinstance(e, _RPC_ERRORS):
        return f"{e.code().name}: {e.details()}"
    return f"{type(e).__name__}: {e}"


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix` (etcd's prefix range end)."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"


class _Endpoint:
    __slots__ = ("channel", "host", "kv", "port", "watch")

    def __init__(self, host: str, port: int, credentials: Any = None) -> None:
        """A channel to `host:port`: over TLS with `credentials` (grpc.ChannelCredentials), else in clear."""
        self.host = host
        self.port = port
        target = f"{host}:{port}"
        if credentials is None:
            self.channel: Any = rpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        else:
            self.channel = rpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)
        self.kv: Any = rpc.KVStub(self.channel)
        self.watch: Any = rpc.WatchStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class _Cluster:
    """The endpoints and which one is current: calls and watch streams that fail over between them."""

    def __init__(
        self,
        endpoints: list[tuple[str, int]],
        *,
        request_timeout: float,
        retry_timeout: float,
        clock: Clock,
        tls: EtcdTLS | None = None,
        transport: str = "grpc",
    ) -> None:
        self.tls = tls
        credentials = tls.load() if tls is not None else None
        self.eps: list[Any]
        if transport == "gateway":
            context = tls.context() if tls is not None else None
            self.eps = [GatewayEndpoint(h, p, context) for h, p in endpoints]
        elif transport == "grpc":
            self.eps = [_Endpoint(h, p, credentials) for h, p in endpoints]
        else:
            raise ValueError(f"etcd transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        self.cur = 0
        self.timeout = request_timeout
        """Seconds one attempt may take (gRPC's deadline: real time)."""
        self.retry_timeout = retry_timeout
        """Seconds of `clock` a call or a broken watch keeps failing over before Unavailable."""
        self.clock = clock
        self.closed = False
        self.watches: set[Any] = set()

    def tls_hint(self, e: BaseException) -> str:
        """What to check when `e` is a failed TLS handshake (gRPC's details only say "TSI_..."), else ""."""
        details = (e.details() or "") if isinstance(e, _RPC_ERRORS) else ""
        if self.tls is None or not any(s in details for s in _TLS_FAILED):
            return ""
        return (
            f" (the TLS handshake failed: etcd's certificate must chain to cacert and name the endpoint's host, "
            f"and etcd's --trusted-ca-file must have signed our cert; {self.tls})"
        )

    def check_open(self) -> None:
        if self.closed:
            raise Unavailable("store is closed")

    def failed(self, i: int, e: BaseException) -> None:
        """Endpoint `i` failed: move on to the next one (unless another caller already has)."""
        if self.cur == i:
            self.cur = (i + 1) % len(self.eps)
            if len(self.eps) > 1:
                log.warning("etcd endpoint failed", endpoint=self.eps[i], err=_describe(e), next=self.eps[self.cur])

    async def rpc(self, what: str, method: str, req: Any, *, window: float | None = None) -> tuple[Any, bool]:
        """Call `KV.<method>(req)` on the current endpoint, failing over until it succeeds or the window ends.

        Returns the response and whether an earlier attempt failed ambiguously (a write it
        carried may have been applied). Each attempt waits at most `request_timeout`.
        """
        self.check_open()
        window = self.retry_timeout if window is None else window
        clock = self.clock
        deadline = clock.monotonic() + window
        ambiguous = False
        tries = 0
        delay = 0.02
        while True:
            i = self.cur
            ep = self.eps[i]
            timeout = min(self.timeout, max(deadline - clock.monotonic(), 0.25))
            try:
                return await getattr(ep.kv, method)(req, timeout=timeout, metadata=_HASLEADER), ambiguous
            except asyncio.CancelledError:
                if self.closed and _current_task_not_cancelled():
                    raise Unavailable("store is closed") from None
                raise
            except Exception as e:
                if self.closed:
                    raise Unavailable("store is closed") from None
                if not _retryable(e):
                    raise _unexpected(what, ep, e) from e
                ambiguous = ambiguous or not _not_sent(e)
                self.failed(i, e)
                tries += 1
                if clock.monotonic() >= deadline:
                    eps = ", ".join(str(x) for x in self.eps)
                    raise Unavailable(
                        f"etcd {what} failed: cannot reach etcd at {eps} ({tries} attempts in {window:g} s); "
                        f"last error from {ep}: {_describe(e)}{self.tls_hint(e)}"
                    ) from e
                if tries % len(self.eps) == 0:  # a full round failed: back off before the next
                    await clock.sleep(min(delay, max(0.0, deadline - clock.monotonic())))
                    delay = min(delay * 2, 0.5)

    async def create_watch(self, call: Any, ep: _Endpoint, start: bytes, end: bytes, last: int) -> Any:
        """Open the watch of [start, end) after revision `last` on `call`; its first response.

        Raises _StreamEndedError when the endpoint does not create it, TimeoutError after `request_timeout`.
        """
        create = rpc.WatchCreateRequest(
            key=start,
            range_end=end,
            # start at `last`, not last + 1: etcd then reports compaction exactly when
            # `last` < compact revision; the event at `last` itself is dropped by the watch
            start_revision=max(last, 1),
            prev_kv=True,
            fragment=True,
        )
        await call.write(rpc.WatchRequest(create_request=create))
        resp = await asyncio.wait_for(call.read(), self.timeout)
        if not isinstance(resp, _WATCH_RESPONSES) or not resp.created:
            raise _StreamEndedError(f"watch on {ep} was not created")
        return resp

    def watch_failed(self, prefix: str, i: int, ep: _Endpoint, e: BaseException, failed_at: float | None) -> float:
        """A watch stream on endpoint `i` failed with `e`: fail over, and return since when (clock seconds) the
        watch has been failing. Raises what ends the watch instead: Unavailable when closed or once failing for
        `retry_timeout`, `e` itself when it is a StoreError (Compacted), a StoreError when it is not retryable."""
        if self.closed:
            raise Unavailable("store is closed") from None
        if isinstance(e, StoreError):
            raise e
        if isinstance(e, _RPC_ERRORS) and not _retryable(e):
            raise _unexpected("watch", ep, e) from e
        # the stream broke: resume from `last` on the next endpoint
        self.failed(i, e)
        now = self.clock.monotonic()
        failed_at = now if failed_at is None else failed_at
        if now - failed_at >= self.retry_timeout:
            eps = ", ".join(str(x) for x in self.eps)
            raise Unavailable(
                f"etcd watch of {prefix!r}: cannot reach etcd at {eps} for "
                f"{self.retry_timeout:.0f} s; last error from {ep}: {_describe(e)}{self.tls_hint(e)}"
            ) from e
        return failed_at

    async def close(self) -> None:
        """Stop every call and watch (they end with Unavailable) and close the channels."""
        if self.closed:
            return
        self.closed = True
        for call in list(self.watches):
            call.cancel()
        for ep in self.eps:
            await ep.close()


class EtcdStore:
    """The Store contract on etcd: keys under the prefix, compare-and-swap transactions, resuming watches."""

    def __init__(
        self,
        endpoints: list[tuple[str, int]],
        *,
        prefix: str = "/registry/kos",
        request_timeout: float = 3.0,
        retry_timeout: float = 15.0,
        clock: Clock = REAL_CLOCK,
        tls: EtcdTLS | None = None,
        transport: str = "grpc",
    ) -> None:
        """`clock` times the retry windows and the backoff between rounds of failed attempts; each attempt's
        own deadline (`request_timeout`) bounds a gRPC call, so it is gRPC's (real time).

        With `tls`, every endpoint is reached over (mutual) TLS; its files are read here, and EtcdTLSError
        names the one that cannot be used. `transport` is "grpc" (grpc.aio channels) or "gateway" (etcd's JSON
        gateway over kos's HTTP client, kos.storage.etcd_gateway): the same requests and guarantees either way;
        ValueError for another.
        """
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        root = prefix.rstrip("/")
        self._root = root.encode()
        self._cut = len(self._root)
        self._cluster = _Cluster(
            endpoints, request_timeout=request_timeout, retry_timeout=retry_timeout, clock=clock, tls=tls,
            transport=transport,
        )  # fmt: skip
        self._eps = self._cluster.eps
        self._rpc = self._cluster.rpc
        self._rev_waiters: list[asyncio.Future[int]] = []
        """Callers of `current_revision` waiting for the next `Range` to be sent."""
        self._rev_task: asyncio.Task[None] | None = None
        """The task sending those `Range`s, while there are callers."""

    @classmethod
    async def open(
        cls,
        endpoints: list[tuple[str, int]],
        *,
        prefix: str = "/registry/kos",
        connect_timeout: float = 5.0,
        request_timeout: float = 3.0,
        retry_timeout: float = 15.0,
        clock: Clock = REAL_CLOCK,
        tls: EtcdTLS | None = None,
        transport: str = "grpc",
    ) -> EtcdStore:
        """Connect to the first endpoint that answers; Unavailable if none does within `connect_timeout`.

        `tls` and `transport` as for the constructor (EtcdTLSError for an unusable file, before any connection).
        """
        store = cls(endpoints, prefix=prefix, request_timeout=request_timeout, retry_timeout=retry_timeout,
                    clock=clock, tls=tls, transport=transport)  # fmt: skip
        try:
            await store._rpc("connect", "Range", rpc.RangeRequest(key=store._root, limit=1), window=connect_timeout)
        except BaseException:
            await store.close()
            raise
        return store

    # --- keys -------------------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return self._root + key.encode()

    def _range(self, prefix: str) -> tuple[bytes, bytes]:
        # store keys start with "/": an empty prefix means all of them, not a sibling root's keys
        start = self._root + (prefix or "/").encode()
        return start, _prefix_end(start)

    def _kv(self, kv: Any) -> KeyValue:
        return KeyValue(kv.key[self._cut :].decode(), kv.value, kv.create_revision, kv.mod_revision)

    # --- reads ------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        req = rpc.RangeRequest(key=self._key(key))
        resp, _ = await self._rpc("get", "Range", req)
        return self._kv(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        start, end = self._range(prefix)
        for _ in range(5):
            items: list[KeyValue] = []
            rev = 0
            key = start
            try:
                while True:
                    req = rpc.RangeRequest(key=key, range_end=end, limit=_PAGE, revision=rev)
                    resp, _ = await self._rpc("list", "Range", req)
                    if rev == 0:
                        rev = int(resp.header.revision)
                    items.extend(self._kv(kv) for kv in resp.kvs)
                    if not resp.more or not resp.kvs:
                        return items, rev
                    key = resp.kvs[-1].key + b"\0"
            except _CompactedReadError:
                continue  # compacted between pages: start again at the new revision
        raise Unavailable(f"etcd list of {prefix!r}: history kept being compacted while paging")

    async def current_revision(self) -> int:
        """etcd's current revision, read after this call began (a linearizable read, as etcd's `Range`).

        Concurrent callers share one `Range`: a caller joins the next request to be sent, never one
        already on the wire (that one may have been answered before a write this caller saw acknowledged),
        so every caller still gets a revision read after it called. The apiserver reads it for every
        consistent read (`Cacher.sync`); under load this halves those round trips. Raises
        Unavailable (and what `_Cluster.rpc` raises) to every caller of the failed request.
        """
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._rev_waiters.append(fut)
        if self._rev_task is None:
            self._rev_task = asyncio.get_running_loop().create_task(self._read_revisions())
        return await fut

    async def _read_revisions(self) -> None:
        """Send one `Range` for every group of `current_revision` callers that arrived while the last was out."""
        group: list[asyncio.Future[int]] = []
        try:
            while self._rev_waiters:
                group, self._rev_waiters = self._rev_waiters, []
                req = rpc.RangeRequest(key=self._root, limit=1, keys_only=True)
                try:
                    resp, _ = await self._rpc("revision", "Range", req)
                except Exception as e:
                    for f in group:
                        if not f.done():
                            f.set_exception(e)
                    continue
                rev = int(resp.header.revision)
                for f in group:
                    if not f.done():
                        f.set_result(rev)
        except BaseException:  # cancelled (the loop is closing): so are its callers
            for f in group + self._rev_waiters:
                f.cancel()
            self._rev_waiters = []
            raise
        finally:
            self._rev_task = None

    # --- writes -----------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> int:
        k = self._key(key)
        req = rpc.TxnRequest(
            compare=[rpc.Compare(key=k, target=_CREATE, result=_EQUAL, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        resp, ambiguous = await self._rpc("create", "Txn", req)
        if resp.succeeded:
            return int(resp.header.revision)
        kvs = resp.responses[0].response_range.kvs
        if ambiguous and kvs and await self._created_by(k, kvs[0], value):
            log.info("etcd create: an interrupted attempt was applied", key=key, revision=kvs[0].create_revision)
            return int(kvs[0].create_revision)
        raise KeyExists(key)

    async def _created_by(self, k: bytes, kv: Any, value: bytes) -> bool:
        """Whether the key's current incarnation `kv` was created with exactly `value`: by our own interrupted
        attempt, since a create's value (an object with its UID and creation time) is never written twice.

        When the key has been written since (another client already updated what our attempt created, as a
        controller does within milliseconds), its value at the create revision is read back; if that history
        has been compacted, nobody can tell, and the answer is no (KeyExists, as before)."""
        if kv.create_revision == kv.mod_revision:
            return bool(kv.value == value)
        req = rpc.RangeRequest(key=k, revision=kv.create_revision)
        try:
            resp, _ = await self._rpc("create", "Range", req)
        except StoreError:
            return False
        return bool(resp.kvs) and resp.kvs[0].value == value and resp.kvs[0].create_revision == kv.create_revision

    def _guarded(self, guards: Sequence[Guard]) -> tuple[_Ops, _Ops]:
        """Compares for `guards`, and the reads that tell which one failed."""
        compare, reads = [], []
        for g in guards:
            gk = self._key(g.key)
            compare.append(rpc.Compare(key=gk, target=_MOD, result=_EQUAL, mod_revision=g.mod_revision))
            reads.append(rpc.RequestOp(request_range=rpc.RangeRequest(key=gk)))
        return compare, reads

    def _failed_guard(self, guards: Sequence[Guard], resp: Any) -> GuardFailed:
        for i, g in enumerate(guards):
            kvs = resp.responses[i + 1].response_range.kvs
            cur = self._kv(kvs[0]) if kvs else None
            if not guard_holds(g, cur):
                return GuardFailed(g, cur)
        raise StoreError("etcd transaction failed although its key and every guard held")

    async def update(self, key: str, value: bytes, expected_revision: int, guards: Sequence[Guard] = ()) -> int:
        k = self._key(key)
        compare = [rpc.Compare(key=k, target=_MOD, result=_EQUAL, mod_revision=expected_revision)]
        if expected_revision <= 0:  # a missing key has mod_revision 0: require that it exists
            compare.append(rpc.Compare(key=k, target=_CREATE, result=_GREATER, create_revision=0))
        guard_compare, guard_reads = self._guarded(guards)
        req = rpc.TxnRequest(
            compare=compare + guard_compare,
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k)), *guard_reads],
        )
        resp, ambiguous = await self._rpc("update", "Txn", req)
        if resp.succeeded:
            return int(resp.header.revision)
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            raise KeyNotFound(key)
        if ambiguous and kvs[0].mod_revision > expected_revision:
            if kvs[0].value == value:
                log.info("etcd update: an interrupted attempt was applied", key=key, revision=kvs[0].mod_revision)
                return int(kvs[0].mod_revision)
            # written since: was the first change after the revision we expected ours?
            first = await self._first_change_after(key, expected_revision)
            if first is not None and first.type is EventType.MODIFIED and first.value == value:
                log.info("etcd update: an interrupted attempt was applied, then overwritten", key=key,
                         revision=first.revision)  # fmt: skip
                return first.revision
        if kvs[0].mod_revision != expected_revision:
            raise RevisionMismatch(key, expected_revision, self._kv(kvs[0]))
        raise self._failed_guard(guards, resp)

    async def delete(self, key: str, expected_revision: int | None = None, guards: Sequence[Guard] = ()) -> Deleted:
        k = self._key(key)
        compare = [rpc.Compare(key=k, target=_CREATE, result=_GREATER, create_revision=0)]
        if expected_revision is not None:
            compare.append(rpc.Compare(key=k, target=_MOD, result=_EQUAL, mod_revision=expected_revision))
        guard_compare, guard_reads = self._guarded(guards)
        req = rpc.TxnRequest(
            compare=compare + guard_compare,
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k)), *guard_reads],
        )
        resp, ambiguous = await self._rpc("delete", "Txn", req)
        if resp.succeeded:
            prev = resp.responses[0].response_delete_range.prev_kvs
            return Deleted(int(resp.header.revision), self._kv(prev[0]))
        kvs = resp.responses[0].response_range.kvs
        if kvs:
            if expected_revision is not None and kvs[0].mod_revision != expected_revision:
                raise RevisionMismatch(key, expected_revision, self._kv(kvs[0]))
            raise self._failed_guard(guards, resp)
        if ambiguous:
            raise Unavailable(
                f"etcd delete of {key}: the connection failed mid-request and the key is now gone; "
                "the delete may have been applied"
            )
        raise KeyNotFound(key)

    async def _first_change_after(self, key: str, after: int) -> Event | None:
        """The first change of exactly `key` after revision `after`, from etcd's history (a watch from there);
        None when that history is compacted or etcd cannot say within `request_timeout`.

        An interrupted compare-and-swap on `key` at `after` that was applied is that change: nothing else
        could change the key at `after` before it. (For a create the store reads the create revision instead.)
        """
        gen = self._watch(key, after)
        try:
            async with asyncio.timeout(self._cluster.timeout):
                async for batch in gen:
                    for ev in batch:
                        if ev.key == key:  # the watch covers every key `key` is a prefix of
                            return ev
        except (StoreError, TimeoutError):
            return None
        finally:
            await gen.aclose()
        return None

    # --- watch and compaction ---------------------------------------------------------------

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[_Events]:
        return self._watch(prefix, after_revision)

    async def _watch(self, prefix: str, after: int) -> AsyncGenerator[_Events, None]:
        c = self._cluster
        c.check_open()
        start, end = self._range(prefix)
        last = after  # every event up to `last` has been delivered
        failed_at: float | None = None
        delay = 0.02
        tries = 0
        while True:
            i = c.cur
            ep = c.eps[i]
            call = ep.watch.Watch(metadata=_HASLEADER)
            c.watches.add(call)
            try:
                resp = await c.create_watch(call, ep, start, end, last)
                failed_at = None  # the retry window restarts; the backoff only once events flow
                pending: _Events = []
                while True:
                    if resp.compact_revision:
                        raise Compacted(last, int(resp.compact_revision))
                    if resp.canceled:
                        raise _StreamEndedError(f"watch on {ep} canceled: {resp.cancel_reason or 'no reason given'}")
                    for ev in resp.events:
                        kv = ev.kv
                        rev = kv.mod_revision
                        if rev <= last:
                            continue
                        has_prev = ev.HasField("prev_kv")
                        prev = ev.prev_kv.value if has_prev else None
                        key = kv.key[self._cut :].decode()
                        if ev.type == _DELETE_EVENT:
                            pending.append(Event(EventType.DELETED, key, prev or b"", prev, rev))
                        elif kv.create_revision == rev:
                            pending.append(Event(EventType.ADDED, key, kv.value, prev, rev))
                        else:
                            pending.append(Event(EventType.MODIFIED, key, kv.value, prev, rev))
                    if pending and not resp.fragment:
                        batch, pending = pending, []
                        last = batch[-1].revision
                        delay, tries = 0.02, 0
                        yield batch
                    resp = await call.read()
                    if not isinstance(resp, _WATCH_RESPONSES):
                        raise _StreamEndedError(f"watch stream from {ep} ended")
            except asyncio.CancelledError:
                if c.closed and _current_task_not_cancelled():
                    raise Unavailable("store is closed") from None
                raise
            except (Exception, _StreamEndedError) as e:
                failed_at = c.watch_failed(prefix, i, ep, e, failed_at)  # raises when the watch must end
                tries += 1
                if tries % len(c.eps) == 0:
                    await c.clock.sleep(delay)
                    delay = min(delay * 2, 0.5)
            finally:
                c.watches.discard(call)
                call.cancel()

    async def compact(self, revision: int) -> None:
        current = await self.current_revision()
        target = min(revision, current)
        if target <= 0:
            return
        req = rpc.CompactionRequest(revision=target, physical=False)
        try:
            await self._rpc("compact", "Compact", req)
        except _CompactedReadError:
            pass  # already compacted at or beyond `target`

    async def close(self) -> None:
        await self._cluster.close()


class _StreamEndedError(Exception):
    """A watch stream ended or was canceled by the server; it is resumed elsewhere."""


class _CompactedReadError(StoreError):
    """etcd answered "required revision has been compacted" (OUT_OF_RANGE)."""


def _unexpected(what: str, ep: _Endpoint, e: Exception) -> StoreError:
    if isinstance(e, _RPC_ERRORS) and e.code() == _OUT_OF_RANGE and "compacted" in (e.details() or ""):
        return _CompactedReadError(f"etcd {what} on {ep}: {e.details()}")
    return StoreError(f"etcd {what} on {ep} failed: {_describe(e)}")


def _current_task_not_cancelled() -> bool:
    task = asyncio.current_task()
    return task is None or task.cancelling() == 0
